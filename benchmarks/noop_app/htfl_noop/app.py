"""No-op rounds: one tiny message to every node and back, timed on the server.

The message type is htfl's ``query.ping``, which the stock ClientApp below and htfl's agent
both answer with an empty reply. ``fast = false`` uses Flower's own Grid.send_and_receive
(stock); ``fast = true`` uses htfl's exchange (the only server-side difference htfl makes).
"""

import json
import time

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

server = ServerApp()
client = ClientApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    rounds, nodes = int(context.run_config["rounds"]), int(context.run_config["nodes"])
    while len(list(grid.get_node_ids())) < nodes:
        time.sleep(0.1)
    node_ids = sorted(grid.get_node_ids())
    times = []
    if context.run_config["fast"]:
        from htfl.flower_adapter import install_server
        from htfl.workstation.server import doorbell
        from htfl.workstation.server.exchange import exchange

        install_server()
        doorbell.start(context.run_config)  # as htfl's ServerApp does
    for r in range(rounds + 1):  # round 0 warms up (first FAB fetch), not counted
        msgs = [
            Message(
                RecordDict({"c": ConfigRecord({"r": r})}), dst_node_id=n, message_type="query.ping"
            )
            for n in node_ids
        ]
        t0 = time.perf_counter()
        if context.run_config["fast"]:
            replies = len(exchange(grid, msgs, None).replies)
        else:
            replies = len(list(grid.send_and_receive(msgs)))
        assert replies == nodes, f"round {r}: {replies}/{nodes} replies"
        if r:
            times.append(time.perf_counter() - t0)
        else:  # warmed up: the benchmark reads CPU time from here on
            open(str(context.run_config["out"]) + ".warm", "w").close()
    with open(str(context.run_config["out"]), "w") as fh:
        json.dump(times, fh)


@client.query("ping")
def query(msg: Message, context: Context) -> Message:
    return Message(RecordDict({"c": ConfigRecord({"ok": 1})}), reply_to=msg)

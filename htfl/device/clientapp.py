"""The ClientApp named in htfl's Flower App Bundle.

htfl agents never load it: their long-lived worker answers in-process. It exists because a
FAB must name a ClientApp, and it tells anyone who runs a stock ``flower-supernode`` what to run.
"""

from __future__ import annotations

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp

from htfl.flower_internals import ErrorCode

app = ClientApp()

_REASON = (
    "this SuperNode is a stock flower-supernode; htfl experiments need `htfl agent` on the "
    "device (it keeps the private model in memory between rounds)"
)


def _refuse(msg: Message, context: Context) -> Message:
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=_REASON), reply_to=msg)


app.train()(_refuse)
app.evaluate()(_refuse)
app.query()(_refuse)

"""Real client sides and the real server side, three rounds in process: the global knowledge
keeps changing after round 1 (the trap of an older port, whose merge weight defaulted to zero)."""

from __future__ import annotations

import numpy as np
import pytest

from htfl.algorithms import METHODS, fedkd, get_method
from tests.algorithms.conftest import FEATURE_DIM, make_clients, method_params, run_round, snapshot

#: What must move each round, per method (the knowledge itself, not its bookkeeping).
KNOWLEDGE = {
    "fd": ["logits"],
    "fml": None,  # every array of the shared model
    "fedmrl": None,
    "fedavg": None,
    "lg_fedavg": ["head.weight", "head.bias"],
    "fedgen": ["head.weight", "generator.out.weight"],
    "fedgh": ["head.weight", "head.bias"],
    "fedl2g": ["guides"],
    "fedktl": ["latents", "images"],
    "fedproto": ["prototypes"],
    "fedtgp": ["prototypes"],
}
SERVER_FAST = {
    "fedgen": {"server_epochs": 10},
    "fedgh": {"server_epochs": 10},
    "fedtgp": {"server_epochs": 10},
    "fedktl": {"server_epochs": 5},
}


@pytest.mark.parametrize("name", sorted(KNOWLEDGE))
def test_global_knowledge_changes_every_round(name: str, generator_file) -> None:
    params = method_params(name, generator_file, **SERVER_FAST.get(name, {}))
    clients = make_clients(name, params)
    server = get_method(name).server(params, 10, FEATURE_DIM, seed=1)
    seen = []
    for _ in range(3):
        run_round(server, clients)
        payload = snapshot(server.global_payload())
        keys = KNOWLEDGE[name] or [k for k, v in payload.items() if v.dtype.kind == "f"]
        seen.append({k: payload[k] for k in keys})
    for before, after in zip(seen, seen[1:], strict=False):
        moved = [k for k in before if not np.allclose(before[k], after[k])]
        assert moved == list(before), f"{name}: unchanged after a round: {set(before) - set(moved)}"


def test_fedkd_global_mentee_moves_and_every_client_holds_the_same_one(generator_file) -> None:
    params = get_method("fedkd").params()
    clients = make_clients("fedkd", params)
    server = get_method("fedkd").server(params, 10, FEATURE_DIM, seed=1)
    synced = []
    for rnd in range(1, 4):
        run_round(server, clients)
        assert int(server.global_payload()["version"]) == rnd
        update = fedkd.decompress(server.global_payload())
        assert max(float(np.abs(v).max()) for v in update.values()) > 0
        states = [{k: v.clone() for k, v in c.synced.items()} for c in clients]
        for other in states[1:]:
            for k in states[0]:
                np.testing.assert_allclose(other[k], states[0][k], atol=1e-6)
        synced.append(states[0])
        # the mentee every client starts the next round from is the synced global one
        for c in clients:
            for k, v in fedkd.float_state(c.mentee).items():
                np.testing.assert_allclose(v, c.synced[k])
    assert not np.allclose(synced[0]["head.weight"], synced[2]["head.weight"])


def test_fedkd_refuses_a_gap_in_the_global_updates(generator_file) -> None:
    client = make_clients("fedkd", get_method("fedkd").params(), num_clients=1)[0]
    with pytest.raises(RuntimeError, match="missed updates"):
        client.receive({"version": np.array(2), "energy": np.array(0.95)})


def test_every_registered_method_is_covered() -> None:
    assert set(METHODS) - {"local"} == set(KNOWLEDGE) | {"fedkd"}

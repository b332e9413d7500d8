"""Small experiment files for fleet tests and benchmarks: FedAvg-style runs of cnn4 on a
sliver of digits, one builder so every fleet run states only what it changes."""

from __future__ import annotations


def cnn4_experiment(
    experiment_id: str,
    classes: dict[str, int],
    *,
    rounds: int,
    eval_every: int | None = None,
    method: str = "fedavg",
    seed: int = 1,
    train_fraction: float = 0.2,
    deadline_seconds: float = 120,
    min_replies: int | None = None,
    devices_extra: str = "",
    superlink_port: int | None = None,
    tail: str = "",
) -> str:
    """The experiment file's text: every class trains cnn4 (feature_dim 16, batch 16) on an
    IID digits partition; ``min_replies`` defaults to every device, ``eval_every`` to the
    last round; ``devices_extra`` adds lines to ``[devices]``, ``tail`` whole sections."""
    counts = ", ".join(f'"{c}" = {n}' for c, n in classes.items())
    models = "\n".join(f'"{c}" = "cnn4"' for c in classes)
    superlink = f'[superlink]\naddress = "127.0.0.1:{superlink_port}"\n' if superlink_port else ""
    return f"""
[experiment]
id = "{experiment_id}"
rounds = {rounds}
eval_every = {eval_every or rounds}
seed = {seed}
[algorithm]
name = "{method}"
[data]
dataset = "digits"
partition = "iid"
train_fraction = {train_fraction}
[training]
batch_size = 16
[devices]
classes = {{ {counts} }}
deadline_seconds = {deadline_seconds}
min_replies = {min_replies or sum(classes.values())}
{devices_extra}
[models]
feature_dim = 16
{models}
{superlink}{tail}"""

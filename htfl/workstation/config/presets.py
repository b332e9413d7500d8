"""``[experiment] preset``: named sets of defaults, filled in where the file is silent.

``preset = "htfllib"`` gives HtFLlib's training setup (``system/main.py`` defaults and the
command lines of ``system/total.sh``, github.com/TsingZ0/HtFLlib): plain SGD at lr 0.01, batch
10, one local epoch, a fixed batch order that drops the last partial batch, evaluation every
round, feature dimension 512, and each method's hyperparameters and HtFLlib's choice at every
point where htfl offers one (docs/algorithms.md lists them). A key the file sets wins over the
preset. The keys the preset filled in are listed in ``experiment.preset_set``, and their values
are in their own sections of the resolved experiment (``experiment.json``). With a
``[models] family``, FML's, FedKD's and FedMRL's shared model is the family's first member
(for the heterogeneous-head families: FedAvgCNN with their first head), as HtFLlib builds it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "apply_preset"]

#: preset -> section -> key -> value (``algorithm.params`` per method: see METHOD_PRESETS)
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "htfllib": {
        "experiment": {"eval_every": 1},
        "training": {
            "learning_rate": 0.01,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "batch_size": 10,
            "local_epochs": 1,
            "shuffle": False,
            "drop_last": True,
        },
        "models": {"feature_dim": 512},
    }
}

#: preset -> method -> parameter -> value: total.sh's flags, main.py's defaults for the rest,
#: and HtFLlib's side of every choice a method module offers.
METHOD_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "htfllib": {
        "fedproto": {
            "lamda": 10.0,
            "weighting": "clients",
            "prototypes": "during_training",
            "mse_over": "all",
        },
        "fedgen": {
            "lamda": 1.0,
            "noise_dim": 32,
            "hidden_dim": 512,
            "generator_learning_rate": 0.1,
            "server_epochs": 100,
            "generator_batch_size": 10,
            "generator_from": "start",
            "generator_mode": "train",
            "noise": "uniform",
        },
        "fd": {"lamda": 1.0, "exclude_own": False},
        "fml": {
            "alpha": 0.5,
            "beta": 0.5,
            "kl_reduction": "elementwise",
            "detach_teacher": False,
            "weighting": "clients",
        },
        "fedkd": {
            "mentee_learning_rate": 0.01,
            "energy_start": 0.95,
            "energy_end": 0.98,
            "weighting": "clients",
        },
        "fedgh": {"server_learning_rate": 0.01, "server_epochs": 1},
        "fedtgp": {
            "lamda": 10.0,
            "server_epochs": 100,
            "tau": 100.0,
            "server_learning_rate": 0.01,
            "mse_over": "all",
        },
        "fedktl": {
            "server_learning_rate": 0.01,
            "server_batch_size": 100,
            "server_epochs": 100,
            "lamda": 1.0,
            "mu": 50.0,
        },
        "fedmrl": {"sub_feature_dim": 128, "weighting": "clients"},
        "fedl2g": {"server_learning_rate": 0.01, "warm_up_rounds": 50},
    }
}


#: methods whose shared model HtFLlib builds as the family's first member
#: (``BaseHeadSplit(args, 0)`` in ``serverfml.py``, ``serverkd.py``, ``servermrl.py``)
SHARED_FROM_FAMILY = ("fml", "fedkd", "fedmrl")


def _first_member(models: Any) -> str | None:
    """The shared model HtFLlib builds for ``[models] family`` (a name or a list): its first
    member, or the family's own global model (HtC families: FedAvgCNN with the first head)."""
    from htfl.models.htfllib import shared_member

    family = models.get("family") if isinstance(models, dict) else None
    if not isinstance(family, (str, list)) or not family:
        return None
    try:
        member = shared_member(family)
    except ValueError:  # an unknown family name: validation names it
        return None
    return member if isinstance(member, str) else None


def _norm(key: str) -> str:
    return key.replace("-", "_")


def apply_preset(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with its preset's values added where the file gives none (a new dict).

    An unknown or missing preset leaves ``raw`` as it is (validation reports the name).
    """
    experiment = raw.get("experiment")
    if not isinstance(experiment, dict):
        return raw
    name = experiment.get("preset", "")
    if not isinstance(name, str) or name not in PRESETS:
        return raw
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    filled: list[str] = []

    def fill(table: dict[str, Any], where: str, values: dict[str, Any]) -> None:
        given = {_norm(k) for k in table}
        for key, value in values.items():
            if key not in given:
                table[key] = value
                filled.append(f"{where}.{key}")

    for section, values in PRESETS[name].items():
        table = out.setdefault(section, {})
        if isinstance(table, dict):
            fill(table, section, values)
    algorithm = out.get("algorithm")
    if isinstance(algorithm, dict) and isinstance(algorithm.get("name"), str):
        method = algorithm["name"].lower()
        params = algorithm.get("params", {})
        if isinstance(params, dict):
            params = dict(params)
            fill(params, "algorithm.params", METHOD_PRESETS[name].get(method, {}))
            first = _first_member(out.get("models"))
            if method in SHARED_FROM_FAMILY and first is not None:
                fill(params, "algorithm.params", {"shared_arch": first})
            algorithm["params"] = params
    if "preset_set" not in {_norm(k) for k in out["experiment"]}:
        out["experiment"]["preset_set"] = filled
    return out

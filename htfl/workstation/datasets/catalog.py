"""The datasets htfl can load, with their loader classes; registers one default each.

The registered instances look for their archives in ``<data dir>/archives/<name>/`` (see
:func:`htfl.datasets.base.data_dir`) and never download; ``htfl data prepare`` builds
its own instance with :func:`make_loader` from the user's ``--source``, checksum and
loader options.
"""

from __future__ import annotations

from typing import Any

from htfl.datasets.base import DatasetLoader, register_loader
from htfl.datasets.digits import DigitsLoader
from htfl.workstation.datasets.cifar import CIFAR10Loader, CIFAR100Loader
from htfl.workstation.datasets.femnist import FEMNISTLoader
from htfl.workstation.datasets.har import HARLoader
from htfl.workstation.datasets.iwildcam import IWildCamLoader
from htfl.workstation.datasets.mnist import FashionMNISTLoader, MNISTLoader
from htfl.workstation.datasets.pamap2 import PAMAP2Loader

__all__ = ["LOADER_CLASSES", "describe", "make_loader"]

#: name -> (loader class, one-line description)
LOADER_CLASSES: dict[str, tuple[type, str]] = {
    "har": (HARLoader, "UCI HAR: 30 subjects, 6 activities, (9, 128) inertial windows"),
    "pamap2": (PAMAP2Loader, "PAMAP2: 9 subjects, 12 activities, (27, window) IMU windows"),
    "cifar10": (CIFAR10Loader, "CIFAR-10: 60k (3, 32, 32) images, 10 classes"),
    "cifar100": (CIFAR100Loader, "CIFAR-100: 60k (3, 32, 32) images, 100 (or 20) classes"),
    "mnist": (MNISTLoader, "MNIST: 70k (1, 28, 28) digits"),
    "fashion-mnist": (FashionMNISTLoader, "Fashion-MNIST: 70k (1, 28, 28) images, 10 classes"),
    "femnist": (FEMNISTLoader, "FEMNIST (LEAF json): 62 classes, one group per writer"),
    "iwildcam": (IWildCamLoader, "iWildCam (WILDS v2.0): class-trimmed subset, per camera"),
}


def make_loader(name: str, **kwargs: Any) -> DatasetLoader:
    """A fresh loader for ``name`` (``source``, ``expected_sha256``, ``download``, options)."""
    if name == "digits":
        if kwargs:
            raise ValueError(f"digits takes no options, got {sorted(kwargs)}")
        return DigitsLoader()
    try:
        cls, _ = LOADER_CLASSES[name]
    except KeyError:
        known = ", ".join(["digits", *LOADER_CLASSES])
        raise ValueError(f"unknown dataset {name!r}; known: {known}") from None
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{name}: {err}") from None


def describe() -> dict[str, str]:
    return {
        "digits": "scikit-learn digits: 1797 (1, 8, 8) images, bundled",
        **{name: text for name, (_, text) in LOADER_CLASSES.items()},
    }


for _name, (_cls, _) in LOADER_CLASSES.items():
    register_loader(_cls(), replace=True)

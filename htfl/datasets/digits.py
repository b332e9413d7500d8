"""The 8x8 handwritten digits (1797 samples, 10 classes), shipped with the package.

The arrays are scikit-learn's bundled copy of the UCI optdigits test set, saved once as
``htfl/datasets/data/digits.npz`` (provenance, license and how it was made:
``htfl/datasets/data/README.md`` and docs/datasets.md). Shipping the file keeps scikit-learn
off the devices (on Termux it builds from source) while giving byte-identical arrays, so
accuracy figures measured with scikit-learn's loader stay reproducible.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from htfl.datasets.base import LoadedDataset, register_loader

__all__ = ["DIGITS_FILE", "DigitsLoader"]

#: The packaged arrays: ``images`` (1797, 8, 8) uint8 in 0..16, ``target`` (1797,) uint8.
DIGITS_FILE = "digits.npz"


class DigitsLoader:
    """Loads the packaged digits as (N, 1, 8, 8) float32 images in [0, 1] and int64 labels."""

    name = "digits"

    def load(self) -> LoadedDataset:
        packaged = resources.files("htfl.datasets").joinpath("data", DIGITS_FILE)
        with packaged.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
            images, target = npz["images"], npz["target"]
        # Same arithmetic as scikit-learn's float64 images / 16, then float32.
        x = (images.astype(np.float64) / 16.0).astype(np.float32)[:, None, :, :]
        y = target.astype(np.int64)
        return LoadedDataset(
            name=self.name,
            x=x,
            y=y,
            num_classes=10,
            input_shape=(1, 8, 8),
            groups=None,
        )


register_loader(DigitsLoader(), replace=True)

"""scikit-learn's bundled 8x8 handwritten digits (1797 samples, 10 classes, no download)."""

from __future__ import annotations

import numpy as np

from htfl.datasets.base import LoadedDataset, register_loader

__all__ = ["DigitsLoader"]


class DigitsLoader:
    """Loads ``sklearn.datasets.load_digits`` as (N, 1, 8, 8) float32 images in [0, 1]."""

    name = "digits"

    def load(self) -> LoadedDataset:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = np.asarray(bunch.images, dtype=np.float64) / 16.0
        x = images.astype(np.float32)[:, None, :, :]
        y = np.asarray(bunch.target, dtype=np.int64)
        return LoadedDataset(
            name=self.name,
            x=x,
            y=y,
            num_classes=10,
            input_shape=(1, 8, 8),
            groups=None,
        )


register_loader(DigitsLoader(), replace=True)

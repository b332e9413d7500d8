"""FedKTL (Zhang et al., CVPR 2024): knowledge from a server-side pre-trained generator, reached
through tiny uploads.

Client: its private model's head maps features into a ``classes``-dim space in which a fixed
simplex equiangular tight frame (ETF, one unit vector per class, sent by the server) is the
classifier; training uses an ArcFace-style loss (additive angular margin ``margin``, scale
``scale``) on the cosine to the ETF vectors. Once the server has rendered images, the client also
regresses, through a projection ``d -> w_dim`` (sent by the server), its features of each class
image onto that image's latent vector (MSE, weight ``mu``). Upload: per class, the normalised
mean of its normalised outputs (a prototype in ETF space) and the sample counts.

Server: a feature transformer F (Linear-BN-ReLU-Linear, ``classes -> w_dim``) and one latent
centroid per class are trained with Adam so that F(prototypes) match the generator's latent
distribution (MMD with RBF kernels against ``mapping(z)``, z ~ N(0, I)) and their class
centroid (MSE, weight ``lamda``); the centroids are reset to the class means of F(prototypes)
before and after. The generator then renders one image per class from its centroid. Download:
the ETF, the projection, and, from round 1 on, the images (resized to ``image_size``, in
[0, 1]) with their latents. Each client resizes the images to its input shape, converts
channels (RGB -> grey by the mean) and matches their per-channel mean and standard deviation to
its own training data before use.

The generator: ``generator_path`` names a file written by :func:`save_generator` holding the
weights and configuration of :class:`StyleGenerator` (a mapping network ``z -> w`` and a
synthesis network ``w -> RGB image`` in [-1, 1]); it is read with ``torch.load(weights_only=True)``
so no code from the file runs. Only the server reads it. htfl ships no pre-trained weights (none
may be downloaded here): the tests and the benchmark build a small *untrained* generator with
:func:`example_generator`, which exercises the method end to end but transfers no real
knowledge. To use a real pre-trained generator, export its weights in this format (or extend
:func:`load_generator`).

Differences from HtFLlib's ``clientktl.py`` / ``serverktl_stylegan_*.py``:

* HtFLlib unpickles a StyleGAN checkpoint (running code from the file); we read weights only.
* HtFLlib takes ``acos`` of unclamped cosines, which gives NaN gradients at +-1; we clamp.
* HtFLlib re-sends the projection every round and the client's locally trained copy is dropped
  (it is reloaded from the server before each round); we keep that data flow, which is what the
  download "images + latents + ETF + projection" describes.
* Generated images are matched to the client's own data statistics, where HtFLlib normalises
  them with the fixed (0.5, 0.5) of its datasets.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import AfterValidator, Field
from torch import nn
from torch.nn import functional as F

from htfl import accelerator
from htfl.algorithms import checks, prototypes
from htfl.algorithms.base import ClientSide, Method, Payload, ServerSide, Upload, class_means
from htfl.algorithms.state import load_module_payload, module_payload
from htfl.validation import Text, fail, table

GENERATOR_FORMAT = "htfl.fedktl.generator"
ETF, IMAGES, LATENTS, PRESENT = "etf", "images", "latents", "present"
PROJECTION = "projection."


# --- the generator and its file -------------------------------------------------------------
class StyleGenerator(nn.Module):
    """A small style-based generator: ``mapping(z) -> w`` and ``synthesis(w) -> image``.

    ``channels`` lists the synthesis widths from the 4x4 base; each extra entry doubles the
    resolution, so the image side is ``4 * 2 ** (len(channels) - 1)``.
    """

    def __init__(self, z_dim: int, w_dim: int, mapping_layers: int, channels: list[int]) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "z_dim": z_dim,
            "w_dim": w_dim,
            "mapping_layers": mapping_layers,
            "channels": list(channels),
        }
        self.z_dim, self.w_dim = z_dim, w_dim
        layers: list[nn.Module] = []
        for i in range(mapping_layers):
            layers += [nn.Linear(z_dim if i == 0 else w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.mapping_net = nn.Sequential(*layers)
        self.base = nn.Linear(w_dim, channels[0] * 16)
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            blocks += [
                nn.Upsample(scale_factor=2.0, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.LeakyReLU(0.2),
            ]
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Conv2d(channels[-1], 3, 1)

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (len(self.config["channels"]) - 1)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        return self.mapping_net(z)

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        x = self.base(w).view(len(w), self.config["channels"][0], 4, 4)
        return torch.tanh(self.to_rgb(self.blocks(x)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping(z))


def example_generator(seed: int = 0, w_dim: int = 64) -> StyleGenerator:
    """A small *untrained* generator (16x16 images) for tests and smoke runs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StyleGenerator(z_dim=32, w_dim=w_dim, mapping_layers=2, channels=[32, 16, 8])


def save_generator(generator: StyleGenerator, path: str | Path) -> None:
    torch.save(
        {
            "format": GENERATOR_FORMAT,
            "config": generator.config,
            "state_dict": generator.state_dict(),
        },
        path,
    )


class GeneratorFileError(ValueError):
    pass


def load_generator(path: str | Path) -> StyleGenerator:
    """Read a file written by :func:`save_generator` (weights only; no code runs)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as err:
        raise GeneratorFileError(f"cannot read {str(path)!r}: {err.strerror}") from None
    if not path.is_file():
        raise GeneratorFileError(f"{str(path)!r} is not a file")
    return _load_generator(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load_generator(path: str, mtime_ns: int, size: int) -> StyleGenerator:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GeneratorFileError(f"{path!r} is not a generator file ({first[:160]})") from None
    if not isinstance(blob, dict) or blob.get("format") != GENERATOR_FORMAT:
        raise GeneratorFileError(
            f"{path!r} is not a generator file (expected a dict with format "
            f"{GENERATOR_FORMAT!r}, written by htfl.algorithms.fedktl.save_generator)"
        )
    try:
        generator = StyleGenerator(**blob["config"])
        generator.load_state_dict(blob["state_dict"])
    except Exception as err:
        raise GeneratorFileError(
            f"{path!r}: weights do not fit its configuration ({err})"
        ) from None
    return generator.eval().requires_grad_(False)


# --- parameters -----------------------------------------------------------------------------
def _generator_named(path: str) -> str:
    if not path:
        raise fail("required: a generator file written by htfl.algorithms.fedktl.save_generator")
    # Resolve where the experiment file is read, so the ServerApp (whose working directory may
    # differ) and the recorded experiment name the same file.
    return os.path.abspath(os.path.expanduser(path))


@table
class FedKTLParams:
    generator_path: Annotated[
        Text, AfterValidator(_generator_named), Field(validate_default=True)
    ] = ""
    mu: checks.NonNegative = 50.0  # client: weight of the image -> latent regression
    lamda: checks.NonNegative = 1.0  # server: weight of the centroid term
    margin: checks.NonNegative = 0.5  # ArcFace angular margin (radians)
    scale: checks.Positive = 64.0  # ArcFace scale
    image_size: checks.AtLeastOne = 32  # side of the images sent to clients
    server_epochs: checks.AtLeastOne = 100
    server_learning_rate: checks.Positive = 0.01
    server_batch_size: checks.AtLeastTwo = 100

    def check_files(self) -> list[str]:
        """The preflight step: the generator file must load (validation reads no file)."""
        try:
            load_generator(self.generator_path)
        except GeneratorFileError as err:
            return [f"generator_path: {err}"]
        return []


# --- pure pieces of the method ----------------------------------------------------------------
def simplex_etf(num_classes: int, dim: int, seed: int) -> np.ndarray:
    """A ``dim x num_classes`` simplex ETF: unit columns, pairwise cosine -1/(classes - 1)."""
    if dim < num_classes:
        raise ValueError(f"an ETF of {num_classes} classes needs dim >= classes, got {dim}")
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.random((dim, num_classes)))
    centring = np.eye(num_classes) - np.full((num_classes, num_classes), 1.0 / num_classes)
    return (np.sqrt(num_classes / (num_classes - 1)) * basis @ centring).astype(np.float32)


def arcface_logits(
    cosine: torch.Tensor, labels: torch.Tensor, margin: float, scale: float
) -> torch.Tensor:
    """``scale * cos(theta + margin)`` for the true class, ``scale * cos(theta)`` for the rest."""
    theta = torch.acos(cosine.clamp(-1 + 1e-6, 1 - 1e-6))
    target = F.one_hot(labels, cosine.shape[1]).bool()
    return scale * torch.where(target, torch.cos(theta + margin), cosine)


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidths=(10.0, 15.0, 20.0, 50.0)) -> torch.Tensor:
    """Maximum mean discrepancy with a sum of RBF kernels ``exp(-d^2 / (2 a))`` (biased)."""
    dxx, dyy, dxy = torch.cdist(x, x) ** 2, torch.cdist(y, y) ** 2, torch.cdist(x, y) ** 2
    terms = [
        torch.exp(-0.5 * dxx / a) + torch.exp(-0.5 * dyy / a) - 2 * torch.exp(-0.5 * dxy / a)
        for a in bandwidths
    ]
    k = terms[0]
    for term in terms[1:]:
        k = k + term
    return k.mean()


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] to [0, 1], quantised to 8 bits as an image would be."""
    return ((images * 127.5 + 128).clamp(0, 255).floor() / 255).to(torch.float32)


def adapt_images(
    images: torch.Tensor, input_shape: tuple[int, ...], mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """Server images (N, 3, S, S) in [0, 1] to a client's input: size, channels, statistics."""
    channels, height, width = input_shape
    x = F.interpolate(images, size=(height, width), mode="bilinear", antialias=True)
    if channels != 3:
        x = x.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1)
    dims = (0, 2, 3)
    x = (x - x.mean(dims, keepdim=True)) / x.std(dims, keepdim=True).clamp(min=1e-6)
    return x * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)


class FeatureTransformer(nn.Module):
    """F: ETF-space prototype -> generator latent (Linear-BN-ReLU-Linear)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def class_centroids(
    latents: torch.Tensor, labels: torch.Tensor, num_classes: int, previous: torch.Tensor
) -> torch.Tensor:
    """Per class, the mean latent of its prototypes; classes without one keep ``previous``."""
    means, counts = class_means(latents, labels, num_classes)
    held = torch.from_numpy(counts > 0).to(previous.device)
    return torch.where(held.unsqueeze(1), torch.from_numpy(means).to(previous.device), previous)


# --- the two sides ----------------------------------------------------------------------------
class FedKTLClient(ClientSide):
    max_grad_norm = 100.0  # as HtFLlib

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.etf: torch.Tensor | None = None  # classes x classes, unit rows
        self.projection: nn.Linear | None = None
        self.pairs: tuple[torch.Tensor, torch.Tensor] | None = None
        x = torch.from_numpy(np.array(self.shard.train_x))
        dims = (0, *range(2, x.ndim))
        self.data_mean, self.data_std = x.mean(dims), x.std(dims).clamp(min=1e-6)

    def receive(self, download: Payload) -> None:
        if ETF not in download:
            return
        self.etf = self.on_device(F.normalize(torch.from_numpy(download[ETF]).T, dim=1))
        weight = download[PROJECTION + "weight"]
        if self.projection is None:
            self.projection = self.add_module(nn.Linear(weight.shape[1], weight.shape[0]))
        load_module_payload(self.projection, download, PROJECTION)
        if IMAGES in download and len(self.shard.input_shape) == 3:
            keep = torch.from_numpy(download[PRESENT] > 0)
            images = torch.from_numpy(download[IMAGES])[keep]
            latents = torch.from_numpy(download[LATENTS])[keep]
            if len(images):
                adapted = adapt_images(
                    images, tuple(self.shard.input_shape), self.data_mean, self.data_std
                )
                self.pairs = (self.on_device(adapted), self.on_device(latents))

    def _cosine(self, x: torch.Tensor) -> torch.Tensor:
        if self.etf is None:
            raise RuntimeError("FedKTL trains against the server's ETF; none was received yet")
        return F.normalize(self.model(x), dim=1) @ self.etf.T

    def training_loss(self, x, y):
        if self.etf is None:
            return F.cross_entropy(self.model(x), y)
        p = self.params
        loss = F.cross_entropy(arcface_logits(self._cosine(x), y, p.margin, p.scale), y)
        if self.pairs is not None and p.mu > 0:
            images, latents = self.pairs
            mapped = self.projection(self.model.features(images))
            loss = loss + p.mu * F.mse_loss(mapped, latents)
        return loss

    def predict(self, x):
        return self.model(x) if self.etf is None else self._cosine(x)

    def eval_logits(self, x):
        return self.model(x) if self.etf is None else self.params.scale * self._cosine(x)

    @torch.no_grad()
    def upload(self) -> Payload:
        x = self.on_device(torch.from_numpy(self.shard.train_x))
        y = torch.from_numpy(self.shard.train_y)
        outputs = F.normalize(self.model(x), dim=1)
        means, counts = class_means(outputs, y, self.model.num_classes)
        means = F.normalize(torch.from_numpy(means), dim=1).numpy()
        return prototypes.prototype_payload(means, counts)


class FedKTLServer(ServerSide):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        p, c = self.params, self.num_classes
        #: the workstation's GPU when it has one (the generator and F train and render there)
        self.device = accelerator.server_device()
        self.generator = load_generator(p.generator_path).to(self.device)
        w_dim = self.generator.w_dim
        self.etf = simplex_etf(c, c, self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            projection = nn.Linear(self.feature_dim, w_dim)
            self.transformer = FeatureTransformer(c, w_dim)
            self.centroids = nn.Parameter(torch.randn(c, w_dim).to(self.device))
        self.transformer.to(self.device)
        self.projection = module_payload(projection, PROJECTION)
        self.optimizer = torch.optim.Adam(
            [*self.transformer.parameters(), self.centroids], lr=p.server_learning_rate
        )
        self.rng = torch.Generator().manual_seed(self.seed)
        self.present = np.zeros(c, dtype=np.float32)
        self.rendered: Payload = {}
        self.last_loss = float("nan")

    def global_payload(self) -> Payload:
        return {ETF: self.etf, **self.projection, **self.rendered}

    @torch.no_grad()
    def _reset_centroids(self, protos: torch.Tensor, labels: torch.Tensor) -> None:
        self.transformer.eval()
        self.centroids.copy_(
            class_centroids(self.transformer(protos), labels, self.num_classes, self.centroids)
        )

    def align(self, protos: torch.Tensor, labels: torch.Tensor) -> None:
        """Train F and the centroids: MMD to the generator's latents + lamda * centroid MSE."""
        p = self.params
        self._reset_centroids(protos, labels)
        self.transformer.train()
        n = len(labels)
        for _ in range(p.server_epochs):
            order = torch.randperm(n, generator=self.rng)
            for start in range(0, n, p.server_batch_size):
                idx = order[start : start + p.server_batch_size].to(self.device)
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                mapped = self.transformer(protos[idx])
                # drawn on the CPU from the seeded generator whatever the device: same draws
                z = torch.randn(len(idx), self.generator.z_dim, generator=self.rng).to(self.device)
                with torch.no_grad():
                    latents = self.generator.mapping(z)
                loss = mmd_rbf(mapped, latents) + p.lamda * F.mse_loss(
                    mapped, self.centroids[labels[idx]]
                )
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    [*self.transformer.parameters(), self.centroids], 100
                )
                self.optimizer.step()
                self.last_loss = float(loss.detach())
        self._reset_centroids(protos, labels)

    @torch.no_grad()
    def render(self) -> Payload:
        latents = self.centroids.detach().clone()
        images = to_unit_range(self.generator.synthesis(latents))
        size = self.params.image_size
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        return {
            IMAGES: images.cpu().numpy().astype(np.float32),
            LATENTS: latents.cpu().numpy().astype(np.float32),
            PRESENT: self.present.copy(),
        }

    def merge(self, uploads: list[Upload]) -> None:
        protos, labels = prototypes.prototype_pairs(uploads)
        if len(labels) < 2:
            return
        for upload in uploads:
            self.present = np.maximum(
                self.present, (upload.payload["counts"] > 0).astype(np.float32)
            )
        self.align(
            torch.from_numpy(protos).to(self.device), torch.from_numpy(labels).to(self.device)
        )
        self.rendered = self.render()


METHOD = Method(
    name="fedktl",
    params=FedKTLParams,
    client=FedKTLClient,
    server=FedKTLServer,
    declared_upload_bytes=lambda params, num_classes, feature_dim, model_bytes, **_: (
        prototypes.declared_prototype_bytes(num_classes, num_classes)
    ),
    summary="ETF-space prototypes; server renders class images with a generator",
)


def main(argv: list[str] | None = None) -> int:
    """``python -m htfl.algorithms.fedktl example-generator PATH``: write the untrained example."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m htfl.algorithms.fedktl")
    sub = parser.add_subparsers(dest="command", required=True)
    example = sub.add_parser("example-generator", help="write the untrained example generator")
    example.add_argument("path", type=Path)
    example.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.path.parent.mkdir(parents=True, exist_ok=True)
    save_generator(example_generator(seed=args.seed), args.path)
    print(f"wrote {args.path} (untrained: for tests and smoke runs only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""FD, Federated Distillation (Jeong et al., 2018): clients share per-class mean logits.

Client: during local training it accumulates, per label, the mean of its model's logits; the
loss is cross-entropy + ``lamda`` * KD(logits, teacher[y]), where the teacher of label y is the
global mean logit of y *without this client's own contribution* (the paper's
``(F_hat - F_i) / (M - 1)``). Upload: those per-class mean logits and how many samples produced
each. Server: per class, the mean over the clients that hold the class (each client counts
once), plus how many clients held it. Download: the global logits and the holder counts.

Differences from HtFLlib's ``clientfd.py`` / ``serverfd.py``, where we follow the paper:

* HtFLlib distils towards the global mean *including* the client's own logits; the paper
  subtracts them (a client should not distil from itself). With a skewed split a class held by
  this client alone has no teacher at all, rather than itself as teacher.
* HtFLlib's distillation term is ``CrossEntropyLoss(output, raw_logits)``, i.e. cross-entropy
  against *unnormalised* logits used as class probabilities; we use the usual KD term, the KL
  divergence between softmax(teacher / T) and softmax(student / T), times T^2.
* The paper divides by ``M - 1`` (all other devices); on a non-IID split most devices never
  saw a class, so we divide by the number of other devices that *hold* the class. On an IID
  split (the paper's setting) the two are the same.

``exclude_own = false`` (the ``htfllib`` preset) distils towards the mean including the
client's own logits, as HtFLlib does. The download names the clients whose uploads the mean
holds (``contributors``): a client subtracts its own upload only when the server kept it (an
upload set aside as non-finite, or one that came too late, is not in the mean).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from htfl.algorithms import checks
from htfl.algorithms.aggregate import mean_over_holders
from htfl.algorithms.base import ClientSide, Method, Payload, ServerSide, Upload
from htfl.algorithms.distill import kd_loss
from htfl.validation import Flag, table


@table
class FDParams:
    lamda: checks.NonNegative = 1.0  # weight of the distillation term
    temperature: checks.Positive = 1.0
    #: the teacher leaves out this client's own logits (the paper); false: HtFLlib's mean of all
    exclude_own: Flag = True


def global_logits(uploads: list[Upload], num_classes: int) -> Payload:
    """Per class, the mean of the clients' mean logits over the clients holding the class."""
    means, holders = mean_over_holders(
        [u.payload["logits"] for u in uploads], [u.payload["counts"] for u in uploads], num_classes
    )
    contributors = np.array(sorted(u.client_index for u in uploads), dtype=np.int64)
    return {"logits": means, "holders": holders, "contributors": contributors}


def teacher_logits(
    global_mean: np.ndarray, holders: np.ndarray, own: np.ndarray | None, own_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each class's teacher for one client: the global mean without the client's own share.

    Returns the teachers and a mask of the classes that have one (held by someone else).
    """
    teachers = global_mean.astype(np.float64).copy()
    others = holders.astype(np.float64).copy()
    if own is not None:
        mine = own_counts > 0
        others[mine] -= 1
        with np.errstate(invalid="ignore", divide="ignore"):
            excluded = (global_mean[mine] * holders[mine, None] - own[mine]) / others[mine, None]
        teachers[mine] = np.where(others[mine, None] > 0, excluded, 0.0)
    return teachers.astype(np.float32), (others > 0).astype(np.float32)


class FDClient(ClientSide):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        c = self.model.num_classes
        self.teachers: torch.Tensor | None = None
        self.has_teacher = torch.zeros(c, dtype=torch.bool, device=self.device)
        self.uploaded: tuple[np.ndarray, np.ndarray] | None = None
        self._sums = torch.zeros(c, c, dtype=torch.float64, device=self.device)
        self._counts = torch.zeros(c, dtype=torch.float64, device=self.device)

    def receive(self, download: Payload) -> None:
        if "logits" not in download:
            return
        in_mean = self.uploaded is not None and (
            "contributors" not in download
            or self.shard.client_index in np.asarray(download["contributors"]).tolist()
        )
        own, own_counts = (
            self.uploaded
            if in_mean and self.uploaded and self.params.exclude_own
            else (None, np.zeros(len(download["holders"])))
        )
        teachers, mask = teacher_logits(download["logits"], download["holders"], own, own_counts)
        self.teachers = self.on_device(torch.from_numpy(teachers))
        self.has_teacher = self.on_device(torch.from_numpy(mask > 0))

    def training_loss(self, x, y):
        logits = self.model(x)
        with torch.no_grad():
            self._sums.index_add_(0, y, logits.detach().to(torch.float64))
            self._counts += torch.bincount(y, minlength=self.model.num_classes).to(torch.float64)
        loss = F.cross_entropy(logits, y)
        if self.teachers is not None and self.params.lamda > 0:
            keep = self.has_teacher[y]
            if bool(keep.any()):
                kd = kd_loss(logits[keep], self.teachers[y[keep]], self.params.temperature)
                loss = loss + self.params.lamda * kd * keep.float().mean()
        return loss

    def upload(self) -> Payload:
        means = (self._sums / self._counts.clamp(min=1).unsqueeze(1)).cpu().numpy()
        means = means.astype(np.float32)
        counts = self._counts.cpu().numpy().astype(np.float32)
        self._sums.zero_()
        self._counts.zero_()
        self.uploaded = (means, counts)
        return {"logits": means, "counts": counts}


class FDServer(ServerSide):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.knowledge: Payload = {}

    def global_payload(self) -> Payload:
        return self.knowledge

    def merge(self, uploads: list[Upload]) -> None:
        if uploads:
            self.knowledge = global_logits(uploads, self.num_classes)


def declared_upload_bytes(params, num_classes, feature_dim, model_bytes, **_) -> int:
    return 4 * (num_classes * num_classes + num_classes)


METHOD = Method(
    name="fd",
    params=FDParams,
    client=FDClient,
    server=FDServer,
    declared_upload_bytes=declared_upload_bytes,
    summary="per-class mean logits, mean over holders",
)

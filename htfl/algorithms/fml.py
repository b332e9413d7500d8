"""FML, Federated Mutual Learning (Shen et al., 2020): a small shared "meme" model beside each
private model, the two trained by deep mutual learning.

Client: the private model's loss is ``alpha`` * CE + (1 - alpha) * KL(meme || private); the
meme's is ``beta`` * CE + (1 - beta) * KL(private || meme), each teacher held fixed. Upload: the
meme model (``shared_arch``, built by every client from the experiment seed, so all start
equal). Server: the sample-weighted average of the memes (FedAvg). Download: the averaged meme.
Evaluation uses the private model; the meme only carries knowledge between clients.

Differences from HtFLlib's ``clientfml.py`` / ``serverfml.py``, where we follow the paper:

* HtFLlib's defaults are ``alpha = beta = 1.0``, which switches the mutual terms off (the
  weight is ``1 - alpha``); the paper uses 0.5, our default.
* HtFLlib lets each KL term's gradient flow into its teacher too (no detach) and uses
  ``nn.KLDivLoss()``'s element-wise mean (KL / num_classes, ten times weaker on ten
  classes); we use the mutual-learning form, the batch-mean KL with the teacher fixed. Both
  are parameters: ``kl_reduction = "elementwise"`` and ``detach_teacher = false`` (the
  ``htfllib`` preset) give HtFLlib's loss and gradients exactly.
* Gradients are clipped to norm 10 per model, private and meme each, as HtFLlib does.
* HtFLlib averages the memes uniformly; the paper aggregates them as FedAvg does, weighted by
  the clients' sample counts. ``weighting = "clients"`` (the ``htfllib`` preset) is HtFLlib's.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn import functional as F

from htfl.algorithms import checks
from htfl.algorithms.base import ClientSide, Method, Payload
from htfl.algorithms.distill import mutual_kd_losses
from htfl.algorithms.shared import SharedModelServer, shared_model_bytes
from htfl.algorithms.state import load_module_payload, module_payload
from htfl.validation import Flag, table


@table
class FMLParams:
    alpha: checks.Fraction = 0.5  # private model: weight of cross-entropy vs. the mutual term
    beta: checks.Fraction = 0.5  # meme model: the same
    shared_arch: checks.Architecture = "cnn4"
    #: "batchmean": KL per sample (mutual learning); "elementwise": KLDivLoss's default mean,
    #: KL / num_classes (HtFLlib)
    kl_reduction: Literal["batchmean", "elementwise"] = "batchmean"
    #: hold each KL term's teacher fixed (mutual learning); false lets its gradient flow into
    #: the teacher too (HtFLlib)
    detach_teacher: Flag = True
    #: the server's average of the memes: by sample count (FedAvg) or plain (HtFLlib)
    weighting: Literal["samples", "clients"] = "samples"


def mutual_kl(student: torch.Tensor, teacher: torch.Tensor, params: FMLParams) -> torch.Tensor:
    """KL(softmax(teacher) || softmax(student)) with FML's reduction and teacher choices."""
    target = F.softmax(teacher.detach() if params.detach_teacher else teacher, dim=1)
    kl = F.kl_div(F.log_softmax(student, dim=1), target, reduction="batchmean")
    # KLDivLoss()'s default "mean" is the element-wise mean: batchmean / num_classes
    return kl if params.kl_reduction == "batchmean" else kl / student.shape[1]


class FMLClient(ClientSide):
    max_grad_norm = 10.0  # as HtFLlib, against divergence on some tasks

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.meme = self.add_module(self.build_shared_model(self.params.shared_arch))

    def receive(self, download: Payload) -> None:
        load_module_payload(self.meme, download)

    def training_loss(self, x, y):
        logits = self.model(x)
        meme_logits = self.meme(x)
        if self.params.kl_reduction == "batchmean" and self.params.detach_teacher:
            kl_private, kl_meme = mutual_kd_losses(logits, meme_logits)
        else:
            kl_private = mutual_kl(logits, meme_logits, self.params)
            kl_meme = mutual_kl(meme_logits, logits, self.params)
        a, b = self.params.alpha, self.params.beta
        loss_private = a * F.cross_entropy(logits, y) + (1 - a) * kl_private
        loss_meme = b * F.cross_entropy(meme_logits, y) + (1 - b) * kl_meme
        return loss_private + loss_meme

    def clip_gradients(self, params) -> None:
        norm = float(self.max_grad_norm or 0.0)
        for module in (self.model, self.meme):
            torch.nn.utils.clip_grad_norm_(
                [p for p in module.parameters() if p.requires_grad], norm
            )

    def upload(self) -> Payload:
        return module_payload(self.meme)


def declared_upload_bytes(params, num_classes, feature_dim, model_bytes, input_shape=None) -> int:
    return shared_model_bytes(params.shared_arch, input_shape, num_classes, feature_dim)


METHOD = Method(
    name="fml",
    params=FMLParams,
    client=FMLClient,
    server=SharedModelServer,
    declared_upload_bytes=declared_upload_bytes,
    summary="shared meme model by mutual learning, FedAvg",
)

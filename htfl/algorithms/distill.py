"""Knowledge-distillation losses shared by FD, FML and FedKD."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) * T^2, averaged over the batch.

    The teacher is a fixed target: no gradient flows into it.
    """
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    p_teacher = F.softmax(teacher_logits.detach() / t, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * (t * t)


def mutual_kd_losses(
    a_logits: torch.Tensor, b_logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deep mutual learning: (a learns from b, b learns from a), each teacher held fixed."""
    return kd_loss(a_logits, b_logits), kd_loss(b_logits, a_logits)

"""Knowledge distillation of the CMB discriminator (stage 2): a small student learns from a
larger teacher's temperature-softened outputs and from the hard labels.

``loss = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)``

The ``T^2`` keeps the soft term's gradients on the scale of the hard term's when the
temperature changes (Hinton et al., 2015). The KL term equals the cross-entropy to the
teacher's soft targets minus the (student-independent) entropy of those targets, so both
have the same gradient with respect to the student.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class DistillationConfig:
    """``temperature`` T > 0 and ``alpha`` in [0, 1] (weight of the soft term)."""

    temperature: float = 3.0
    alpha: float = 0.7

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")


def soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Teacher probabilities at ``temperature`` (``[N, C]``)."""
    return F.softmax(teacher_logits / temperature, dim=1)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor | None = None,
                      config: DistillationConfig = DistillationConfig()) -> torch.Tensor:
    """The loss above for logits ``[N, C]`` and integer ``labels`` ``[N]`` (``None``:
    soft term only). The teacher is not differentiated."""
    t = float(config.temperature)
    targets = soft_targets(teacher_logits.detach(), t)
    log_student = F.log_softmax(student_logits / t, dim=1)
    soft = F.kl_div(log_student, targets, reduction="batchmean") * t * t
    if labels is None or config.alpha == 1.0:
        return soft
    hard = F.cross_entropy(student_logits, labels)
    return config.alpha * soft + (1.0 - config.alpha) * hard

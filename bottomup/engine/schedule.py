"""Learning-rate schedule: linear warm-up over iterations, then step decay at epoch milestones."""

from __future__ import annotations

from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["warmup_multistep"]


def warmup_multistep(
    optimizer: Optimizer,
    iters_per_epoch: int,
    warmup_iters: int = 500,
    warmup_factor: float = 0.001,
    milestones: Sequence[int] = (200, 260),
    gamma: float = 0.1,
) -> LambdaLR:
    """Per-iteration LR multiplier: linear from ``warmup_factor`` to 1 over ``warmup_iters`` iterations, times
    ``gamma`` for each milestone epoch passed (official HigherHRNet: x0.1 at epochs 200 and 260 of 300).

    Step it once per optimiser step. ``iters_per_epoch`` converts milestone epochs to iterations.

    Raises:
        ValueError: ``iters_per_epoch`` < 1.
    """
    if iters_per_epoch < 1:
        raise ValueError(f"iters_per_epoch must be >= 1, got {iters_per_epoch}")
    bounds = sorted(int(m) * iters_per_epoch for m in milestones)

    def factor(it: int) -> float:
        warm = 1.0 if it >= warmup_iters else warmup_factor + (1 - warmup_factor) * it / max(1, warmup_iters)
        return warm * gamma ** sum(it >= b for b in bounds)

    return LambdaLR(optimizer, factor)

"""Learning-rate schedules, stepped once per iteration: linear warm-up, then step decay at epoch milestones
(HigherHRNet) or linear decay to 0 (SWAHR)."""

from __future__ import annotations

from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["warmup_multistep", "warmup_linear"]


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


def warmup_linear(
    optimizer: Optimizer,
    iters_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 3,
    warmup_factor: float = 0.1,
) -> LambdaLR:
    """Per-iteration LR multiplier of the official SWAHR recipe (``lib/core/trainer.py``): linear from
    ``warmup_factor`` to 1 over the first ``warmup_epochs`` epochs, then linear to 0 at the end of ``epochs``.

    Iteration ``it`` (0-based, ``W`` warm-up and ``T`` total iterations) runs at ``warmup_factor + (1 -
    warmup_factor) * it / W`` during the warm-up and ``1 - (it - W) / (T - W)`` after it. (The official loop sets
    the rate for the next iteration from the one just done and starts at the full rate: the same values, one
    iteration later.) Step it once per optimiser step.

    Raises:
        ValueError: ``iters_per_epoch`` or ``epochs`` < 1, or ``warmup_epochs`` outside ``[0, epochs)``.
    """
    if iters_per_epoch < 1:
        raise ValueError(f"iters_per_epoch must be >= 1, got {iters_per_epoch}")
    if epochs < 1:
        raise ValueError(f"schedule.epochs must be >= 1 (it follows trainer.epochs), got {epochs}")
    if not 0 <= warmup_epochs < epochs:
        raise ValueError(f"schedule.warmup_epochs must be in [0, {epochs}) (trainer.epochs), got {warmup_epochs}")
    warm = int(round(warmup_epochs * iters_per_epoch))
    total = int(epochs) * iters_per_epoch

    def factor(it: int) -> float:
        if it < warm:
            return warmup_factor + (1 - warmup_factor) * it / warm
        return max(0.0, 1 - (it - warm) / (total - warm))

    return LambdaLR(optimizer, factor)

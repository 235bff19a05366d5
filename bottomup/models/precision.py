"""Numeric precisions: the one table of names and dtypes used by training, inference and the benchmarks.

``fp32`` runs as is (exact); ``bf16`` / ``fp16`` run the network under ``torch.autocast`` (training, the default
inference path) or with weights cast to that dtype (``bottomup.models.fast.prepare_for_inference``).
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["PRECISION_DTYPES", "PRECISIONS", "check_precision", "autocast"]

#: Precision name -> dtype of the arithmetic (weights of a prepared copy, autocast dtype otherwise).
PRECISION_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: The precision names, in table order.
PRECISIONS: tuple[str, ...] = tuple(PRECISION_DTYPES)


def check_precision(precision: str, key: str = "precision") -> str:
    """Return ``precision`` if it names a row of :data:`PRECISION_DTYPES`.

    Args:
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        key: the config key or argument it came from, named in the message (``trainer.precision``, ...).

    Raises:
        ValueError: an unknown name (the message lists the known ones and names ``key``).
    """
    if precision not in PRECISION_DTYPES:
        raise ValueError(f"{key} must be one of {list(PRECISIONS)}, got {precision!r}")
    return precision


def autocast(device_type: str, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast(device_type, dtype)`` for ``bf16`` / ``fp16``; a no-op context for ``fp32``.

    Raises:
        ValueError: an unknown precision.
    """
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=PRECISION_DTYPES[precision])

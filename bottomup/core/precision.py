"""Precision names (torch-free): the settings check them, ``bottomup.models.precision`` maps them to dtypes."""

from __future__ import annotations

__all__ = ["AUTO", "PRECISIONS", "check_precision"]

#: The precision names: ``fp32`` runs as is (exact), ``bf16`` / ``fp16`` under autocast or as a cast copy.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
#: ``trainer.precision: auto``: bf16 where the hardware computes it natively, else fp32.
AUTO = "auto"


def check_precision(precision: str, key: str = "precision") -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`.

    Args:
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        key: the config key or argument it came from, named in the message (``trainer.precision``, ...).

    Raises:
        ValueError: an unknown name (the message lists the known ones and names ``key``).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"{key} must be one of {list(PRECISIONS)}, got {precision!r}")
    return precision

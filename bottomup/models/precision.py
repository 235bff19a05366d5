"""Numeric precisions: the one table of names and dtypes used by training, inference and the benchmarks.

``fp32`` runs as is (exact); ``bf16`` / ``fp16`` run the network under ``torch.autocast`` (training, the default
inference path) or with weights cast to that dtype (``bottomup.models.fast.prepare_for_inference``).
"""

from __future__ import annotations

import contextlib

import torch

from bottomup.core.precision import AUTO, PRECISIONS, check_precision

__all__ = ["PRECISION_DTYPES", "PRECISIONS", "AUTO", "check_precision", "native_bf16", "resolve_precision", "autocast"]

#: Precision name (:data:`bottomup.core.precision.PRECISIONS`) -> dtype of the arithmetic (weights of a prepared
#: copy, autocast dtype otherwise).
PRECISION_DTYPES: dict[str, torch.dtype] = dict(
    zip(PRECISIONS, (torch.float32, torch.bfloat16, torch.float16), strict=True)
)


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA GPU with bf16 support (Ampere and newer), or a CPU
    with AVX512-BF16 or AMX tiles (as oneDNN uses them).

    On a CPU without them (AVX2 only, e.g. many AMD EPYC) PyTorch emulates bf16 convolutions: measured here on
    2 AVX2 cores, a W16 training step in bf16 autocast was ~8x slower than in fp32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(
            getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        )
    return False


def resolve_precision(precision: str, device: torch.device | str, key: str = "precision") -> str:
    """``precision`` itself, or for ``"auto"`` the fastest safe choice on ``device``: ``"bf16"`` where
    :func:`native_bf16`, else ``"fp32"`` (fp16 is never picked: it needs loss scaling and overflows more easily).

    Raises:
        ValueError: a name that is neither ``"auto"`` nor in :data:`PRECISIONS` (the message names ``key``).
    """
    if precision == AUTO:
        return "bf16" if native_bf16(device) else "fp32"
    if precision not in PRECISION_DTYPES:
        raise ValueError(f"{key} must be one of {[AUTO, *PRECISIONS]}, got {precision!r}")
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

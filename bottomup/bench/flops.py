"""Section ``flops``: multiply-adds of one forward, a dense matmul probe of the machine, and the forward's
achieved GFLOP/s against it."""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from bottomup.bench.common import Result, Settings, layout_name, memory_format, model_label, time_fn, train_config
from bottomup.models.precision import PRECISION_DTYPES, autocast
from bottomup.models.vit import Attention

__all__ = ["EXPECTED_GMAC", "FLOP_FORMULAS", "count_macs", "matmul_probe", "bench_flops"]

#: Published / expected multiply-adds (G MACs) of one forward, by (width, input size), 17 keypoints, strides (4, 2).
EXPECTED_GMAC: dict[tuple[int, int], float] = {(32, 512): 46.2}

_aten = torch.ops.aten


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    return sdpa_flop_count(query_shape, key_shape, value_shape)


#: Ops FlopCounterMode has no formula for (their FLOPs were silently left out): the CPU kernel of
#: ``scaled_dot_product_attention`` (torch registers the CUDA flash / memory-efficient / cuDNN ones only), counted
#: as the others: ``2 * (q k^T + attn v)`` multiply-adds.
FLOP_FORMULAS = {_aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}


def _analytic_macs(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, int], list[tuple[nn.ConvTranspose2d, tuple]]]:
    """Multiply-adds of every Conv2d / ConvTranspose2d / Linear and ViT attention in one forward:
    ``({"conv", "deconv", "linear", "attention"}, deconv inputs)``.

    Conv2d: ``N * Cout * Hout * Wout * Cin / groups * kh * kw``. ConvTranspose2d: every input pixel is
    multiplied by the whole kernel, ``N * Cin * Hin * Win * Cout / groups * kh * kw`` (the products that
    fall into the cropped padding are counted too, as FlopCounterMode does). Linear: ``rows * in * out``.
    Attention (``bottomup.models.vit.Attention``, T tokens of C channels): ``2 * N * T^2 * C`` (``q k^T`` and
    ``attn v``; the softmax is not counted, as FlopCounterMode does not).
    """
    counts = {"conv": 0, "deconv": 0, "linear": 0, "attention": 0}
    deconvs: list[tuple[nn.ConvTranspose2d, tuple]] = []

    def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(mod, nn.Linear):
            counts["linear"] += output.numel() // mod.out_features * mod.in_features * mod.out_features
            return
        if isinstance(mod, Attention):
            n, t, c = inputs[0].shape
            counts["attention"] += 2 * n * t * t * c
            return
        kh, kw = mod.kernel_size
        if isinstance(mod, nn.ConvTranspose2d):
            n, _, h, w = inputs[0].shape
            counts["deconv"] += n * h * w * mod.in_channels * mod.out_channels // mod.groups * kh * kw
            deconvs.append((mod, tuple(inputs[0].shape)))
        else:
            n, _, h, w = output.shape
            counts["conv"] += n * h * w * mod.out_channels * mod.in_channels // mod.groups * kh * kw

    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, Attention)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return counts, deconvs


def count_macs(model: nn.Module, size: int, device: torch.device) -> dict[str, float]:
    """Multiply-adds (MACs) of one batch-1 forward at ``size x size`` px.

    Returns:
        dict with ``flop_counter`` (FlopCounterMode FLOPs / 2, with :data:`FLOP_FORMULAS`), ``analytic``
        (per-layer count), ``analytic_conv``, ``analytic_transposed``, ``analytic_linear``, ``analytic_attention``
        (the last two 0 for an HRNet), ``flop_counter_transposed`` (FlopCounterMode on the transposed convolutions
        alone, with their real input shapes), all in MACs.
    """
    model.eval()
    x = torch.zeros(1, 3, size, size, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as fc:
        model(x)
    counts, deconvs = _analytic_macs(model, x)
    fc_deconv = 0
    for mod, shape in deconvs:
        with torch.inference_mode(), FlopCounterMode(display=False) as fcd:
            mod(torch.zeros(shape, device=device))
        fc_deconv += fcd.get_total_flops()
    return {
        "flop_counter": fc.get_total_flops() / 2,
        "analytic": float(sum(counts.values())),
        "analytic_conv": float(counts["conv"]),
        "analytic_transposed": float(counts["deconv"]),
        "analytic_linear": float(counts["linear"]),
        "analytic_attention": float(counts["attention"]),
        "flop_counter_transposed": fc_deconv / 2,
    }


def matmul_probe(n: int, precision: str, device: torch.device, warmup: int, repeats: int) -> list[float]:
    """GFLOP/s of an ``n x n @ n x n`` matmul in ``precision`` (``2 n^3`` FLOPs), one value per repeat.

    On CUDA the fp32 probe uses TF32 exactly when cuDNN convolutions do (``cudnn.allow_tf32``), so that it is
    the ceiling of the same arithmetic as the fp32 forward.
    """
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=PRECISION_DTYPES[precision])
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=PRECISION_DTYPES[precision])
    ctx: contextlib.AbstractContextManager = contextlib.nullcontext()
    if device.type == "cuda" and precision == "fp32":
        ctx = _tf32_matmul(torch.backends.cudnn.allow_tf32)
    with ctx, torch.inference_mode():
        times = time_fn(lambda: torch.mm(a, b), warmup, repeats, device)
    return [2.0 * n**3 / t / 1e9 for t in times]


@contextlib.contextmanager
def _tf32_matmul(enabled: bool) -> Iterator[None]:
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def _expected_gmac(s: Settings) -> float | None:
    """:data:`EXPECTED_GMAC` of the benchmarked network when it is a HigherHRNet of 17 keypoints, strides (4, 2)."""
    model = train_config(s).model
    if not str(model.get("_target_", "")).endswith("HigherHRNet"):
        return None
    if list(model.strides) != [4, 2] or int(model.num_keypoints) != 17 or model.get("swahr", False):
        return None
    return EXPECTED_GMAC.get((int(model.width), s.size))


def _mac_notes(s: Settings, macs: dict[str, float]) -> list[str]:
    gmac = macs["flop_counter"] / 1e9
    transformer = (
        f" + linear {macs['analytic_linear'] / 1e9:.2f} + attention {macs['analytic_attention'] / 1e9:.2f}"
        if macs["analytic_linear"] or macs["analytic_attention"]
        else ""
    )
    notes = [
        f"forward MACs at {s.size}x{s.size}, {model_label(s)}: FlopCounterMode {gmac:.2f} G, analytic "
        f"{macs['analytic'] / 1e9:.2f} G (conv {macs['analytic_conv'] / 1e9:.2f} + transposed conv "
        f"{macs['analytic_transposed'] / 1e9:.3f}{transformer}); "
        f"FlopCounterMode on the transposed convs alone: {macs['flop_counter_transposed'] / 1e9:.3f} G "
        + (
            "(= Cin*Cout*k*k*Hin*Win: counted properly)"
            if math.isclose(macs["flop_counter_transposed"], macs["analytic_transposed"], rel_tol=1e-6)
            else "(differs from Cin*Cout*k*k*Hin*Win!)"
        )
    ]
    expected = _expected_gmac(s)
    if expected is not None:
        ok = abs(gmac - expected) / expected < 0.01
        notes.append(f"expected ~{expected} G MACs for {model_label(s)}-{s.size}: {'matches' if ok else 'DIFFERS'}")
    return notes


def _forward_times(
    s: Settings, model: nn.Module, precision: str, forward_times: dict[tuple[str, bool, bool], list[float]]
) -> tuple[list[float], str]:
    """Seconds per forward in ``precision``: the ``forward`` section's fastest non-compiled variant, else timed
    here (contiguous). Returns the times and where they come from."""
    candidates = {k: v for k, v in forward_times.items() if k[0] == precision and not k[2] and v}
    if candidates:
        key = min(candidates, key=lambda k: statistics.median(candidates[k]))
        return candidates[key], f"forward section, {layout_name(key[1])}"
    x = torch.randn(1, 3, s.size, s.size, device=s.device).contiguous(memory_format=memory_format(False))

    def step() -> None:
        with torch.inference_mode(), autocast(s.device.type, precision):
            model(x)

    return time_fn(step, s.warmup, s.repeats, s.device), "timed here, contiguous"


def bench_flops(
    s: Settings, model: nn.Module, forward_times: dict[tuple[str, bool, bool], list[float]]
) -> tuple[list[Result], list[str]]:
    """MAC count (GMAC), matmul probe (GFLOP/s), the compute floor of a forward (ms) and the achieved forward
    GFLOP/s (with its % of the probe) per precision. Returns results and notes."""
    macs = count_macs(model, s.size, s.device)
    gmac = macs["flop_counter"] / 1e9
    params = sum(p.numel() for p in model.parameters())
    results = [
        Result("flops", "forward MACs (FlopCounterMode)", "GMAC", [gmac], {"macs": macs}),
        Result("flops", "forward MACs (analytic)", "GMAC", [macs["analytic"] / 1e9], {}),
        Result("flops", "parameters", "M", [params / 1e6], {"parameters": params}),
    ]
    for precision in s.precisions:
        probe = matmul_probe(s.probe_size, precision, s.device, max(1, s.warmup), max(s.repeats, 3))
        results.append(
            Result("flops", f"matmul probe {precision} n={s.probe_size}", "GFLOP/s", probe, {"precision": precision})
        )
        # The compute floor: no forward pass can beat its MACs done at the dense-matmul rate of the same machine.
        floor = [2.0 * macs["flop_counter"] / (g * 1e9) * 1e3 for g in probe]
        results.append(
            Result(
                "flops",
                f"forward floor {precision} at the probe's rate",
                "ms",
                floor,
                {"precision": precision},
                note=f"{2 * gmac:.1f} GFLOP at the {precision} matmul probe's GFLOP/s",
            )
        )
        times, source = _forward_times(s, model, precision, forward_times)
        achieved = [2.0 * macs["flop_counter"] / t / 1e9 for t in times]
        pct = 100.0 * statistics.median(achieved) / statistics.median(probe)
        results.append(
            Result(
                "flops",
                f"forward {precision}",
                "GFLOP/s",
                achieved,
                {"precision": precision, "source": source, "pct_of_probe": pct},
                note=f"{pct:.0f}% of the {precision} matmul probe ({source})",
            )
        )
    return results, _mac_notes(s, macs)

"""Section ``backends`` (only when named): the same images through every backend and precision, side by side.

Variants, all with flip test on, one scale, the same weights (``--checkpoint``, else the bench network --
HigherHRNet-W``--width`` or the ``--experiment``'s -- with random weights) and the same thread count (``--threads``,
else torch's):

* ``torch fp32``: ``bottomup.api.PoseEstimator``, the network in fp32;
* ``torch <precision> fast``: the fast path -- BatchNorm folded, weights in bf16, channels_last
  (``fold_bn=True, channels_last=True``), per non-fp32 ``--precisions``;
* ``onnxruntime fp32``, ``openvino fp32``: the exported graph (``bottomup.deploy``) on ONNX Runtime / OpenVINO;
* ``openvino int8`` / ``onnxruntime int8``: the graph quantised by NNCF / ONNX Runtime ``quantize_static`` on
  ``--calib-images`` coco-mini train images (calibration untimed); ``onnxruntime int8 all-ops``: additions, ReLU
  and upsampling quantised too (``--int8-ops all``).

Per variant two rows, ms per image over ``--e2e-images`` coco-mini val images (decoded beforehand):

* ``network``: what the exported graph holds -- the network on the image and its mirror, the averaging and
  projection of the maps (and, for the exported graphs, NMS and top-k); for torch ``network_forward`` twice and
  ``aggregate_outputs``;
* ``e2e``: the whole call (resize and normalisation, network, grouping, back-projection).

The export itself (seconds) is in the notes. Speed-ups are ratios within this one run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bottomup.api import PoseEstimator
from bottomup.bench.common import Result, Settings, coco_layout, val_images
from bottomup.data.io import read_image
from bottomup.data.transforms import preprocess
from bottomup.deploy.export import convert_to_openvino, export_model, quantize_onnx
from bottomup.deploy.runtime import DeployedPoseEstimator
from bottomup.engine.inference import aggregate_outputs, network_forward

__all__ = ["bench_backends"]


def _torch_network(est: PoseEstimator, image: np.ndarray) -> Any:
    """The torch path's share of what the exported graph does: both forwards (flip test) and the aggregation."""
    x, tf = preprocess(image, est.input_size)
    with torch.inference_mode():
        opts = {"precision": est.precision, "channels_last": est.channels_last}
        outs = network_forward(est.model, x, **opts)
        flips = network_forward(est.model, torch.flip(x, [3]), **opts)
        return aggregate_outputs(
            outs,
            flips,
            num_keypoints=est.codec.num_keypoints,
            flip_index=est.codec.flip_index,
            project_size=tf.size,
        )


def _time(fn: Any, items: list[Any], warmup: int, repeats: int) -> tuple[list[float], list[Any]]:
    """Per item, the fastest of ``repeats`` calls (s) after ``warmup`` calls on the first item."""
    for _ in range(warmup):
        fn(items[0])
    best, outs = [], []
    for item in items:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn(item)
            times.append(time.perf_counter() - t0)
        best.append(min(times))
        outs.append(out)
    return best, outs


def bench_backends(
    s: Settings, model: torch.nn.Module | None, threads: int, calib_images: int
) -> tuple[list[Result], list[str]]:
    """Time torch fp32, the torch fast path, ONNX Runtime fp32, OpenVINO fp32 and OpenVINO INT8 on the same images.

    Returns:
        the results (ms/image, per variant ``network`` and ``e2e``) and notes (export times, people found).
    """
    assert s.data_root is not None
    files = val_images(s.data_root)[: s.e2e_images]
    images = [read_image(f) for f in files]
    repeats = max(1, min(s.repeats, 3))
    if s.checkpoint:
        base = PoseEstimator.from_checkpoint(
            s.checkpoint, experiment=s.experiment, device="cpu", input_size=s.size, scales=[1.0], flip_test=True
        )
    else:
        assert model is not None
        base = PoseEstimator(model.cpu(), layout=coco_layout(), input_size=s.size, flip_test=True, device="cpu")
    weights = "checkpoint" if s.checkpoint else "random weights"
    variants: list[tuple[str, Any, Any]] = [("torch fp32", base, lambda im: _torch_network(base, im))]
    for precision in s.precisions:
        if precision == "fp32":
            continue
        fast = base.with_settings(precision=precision, channels_last=True, fold_bn=True)
        variants.append((f"torch {precision} fast", fast, lambda im, fast=fast: _torch_network(fast, im)))
    notes = []
    with tempfile.TemporaryDirectory(prefix="bottomup-bench-") as tmp:
        t0 = time.perf_counter()
        onnx = export_model(base, Path(tmp) / "model.onnx", exporter="torchscript")["model"]
        xml = convert_to_openvino(onnx, Path(tmp) / "model.xml")["model"]
        notes.append(f"backends: export to ONNX + OpenVINO IR {time.perf_counter() - t0:.1f} s")
        calib = [f for f in sorted((s.data_root / "train2017").glob("*.jpg"))][:calib_images]
        t0 = time.perf_counter()
        int8 = convert_to_openvino(onnx, Path(tmp) / "model_int8.xml", int8=True, calibration=calib)["model"]
        notes.append(
            f"backends: NNCF INT8 quantisation on {len(calib)} coco-mini train images {time.perf_counter() - t0:.1f} s"
        )
        t0 = time.perf_counter()
        ort_int8 = quantize_onnx(onnx, Path(tmp) / "model_int8.onnx", calibration=calib)["model"]
        ort_all = quantize_onnx(onnx, Path(tmp) / "model_int8_all.onnx", calibration=calib, ops="all")["model"]
        notes.append(f"backends: ONNX Runtime INT8 quantisation (conv, all ops) {time.perf_counter() - t0:.1f} s")
        for name, path, backend in (
            ("onnxruntime fp32", onnx, "onnxruntime"),
            ("openvino fp32", xml, "openvino"),
            ("openvino int8", int8, "openvino"),
            ("onnxruntime int8", ort_int8, "onnxruntime"),
            ("onnxruntime int8 all-ops", ort_all, "onnxruntime"),
        ):
            dep = DeployedPoseEstimator(path, backend=backend, threads=threads)
            variants.append((name, dep, lambda im, dep=dep: dep.network(dep.preprocess(im)[0])))
        results = []
        for name, est, network in variants:
            info = {"threads": threads, "images": len(images), "weights": weights, "flip": True, "input_size": s.size}
            t_net, _ = _time(network, images, s.warmup, repeats)
            t_e2e, preds = _time(est, images, s.warmup, repeats)
            people = float(np.mean([len(p) for p in preds]))
            results.append(Result("backends", f"{name} network", "ms/image", [t * 1e3 for t in t_net], info,
                                  note=f"{len(images)} images, {weights}, flip on, {threads} threads"))  # fmt: skip
            results.append(Result("backends", f"{name} e2e", "ms/image", [t * 1e3 for t in t_e2e],
                                  {**info, "mean_people": people}, note=f"{people:.1f} people/img"))  # fmt: skip
    ref = {r.name: r.stats()["median"] for r in results}
    fast_name = next((n for n in ref if n.startswith("torch bf16 fast network")), None)
    for int8_name in ("openvino int8 network", "onnxruntime int8 network", "onnxruntime int8 all-ops network"):
        if fast_name and int8_name in ref:
            notes.append(
                f"backends: {int8_name} {ref[fast_name] / ref[int8_name]:.2f}x faster than torch bf16 fast "
                f"({ref[int8_name]:.0f} vs {ref[fast_name]:.0f} ms/image, medians)"
            )
    return results, notes

"""Sections ``grouping`` and ``grouping_reference``: ``bottomup.codec.grouping`` on ideal (round-trip) maps of the
coco-mini val images, alone and against the slow loop reference ``bottomup.codec.reference.reference_group``."""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from bottomup.bench.common import Result, Settings, coco_layout
from bottomup.codec import grouping as G
from bottomup.codec.reference import reference_group
from bottomup.core.keypoints import KeypointLayout
from bottomup.data.ideal_cases import iter_ideal_cases
from bottomup.data.transforms import ResizeTransform
from bottomup.engine.inference import aggregate_outputs

__all__ = ["STEPS", "bench_grouping", "bench_grouping_reference"]

#: The timed steps of grouping, in order.
STEPS: tuple[str, ...] = ("nms_topk", "match", "adjust_refine")
_LABELS = {"nms_topk": "NMS/top-k", "match": "matching", "adjust_refine": "adjust+refine", "total": "total"}


def _maps(per_scale: list, tf: ResizeTransform, layout: KeypointLayout) -> tuple[np.ndarray, np.ndarray]:
    """The aggregated test-time heatmaps ``(K, H, W)`` and tags ``(K, H, W, 1)`` of one ideal case (scale 1)."""
    ((_, outs, flips),) = per_scale
    heat, tag = aggregate_outputs(
        outs, flips, num_keypoints=layout.num_keypoints, flip_index=layout.flip_index, project_size=tf.size
    )
    return heat[0].numpy(), tag[0].numpy()


def _fast_timed(
    det: np.ndarray, tag: np.ndarray, order: list[int], timings: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """``bottomup.codec.grouping`` step by step (the steps of ``group_keypoints`` with its defaults); adds the
    seconds of each of :data:`STEPS` to ``timings``. Returns ``(keypoints (N, K, 5), scores (N,))``."""
    t0 = time.perf_counter()
    band = G._band_max(det)
    cands = G.nms_topk(det, tag, threshold=0.1, _band_max_cache=band)
    t1 = time.perf_counter()
    kp = G.match_by_tag(cands, joint_order=order)
    t2 = time.perf_counter()
    kp = G.adjust_keypoints(kp, det)
    scores = G.person_scores(kp)
    kp = G.refine_keypoints(kp, det, tag, _band_max_cache=band)
    t3 = time.perf_counter()
    for name, dt in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2), strict=True):
        timings[name] = timings.get(name, 0.0) + dt
    return kp, scores


# ---------------------------------------------------------------------------------------------- grouping
def bench_grouping(s: Settings) -> list[Result]:
    """Grouping ms per image on ideal coco-mini val maps (flip off / on), per step, and the total over the images
    with people.

    Per image the median over ``s.repeats`` runs (after ``s.warmup`` on the first image) is kept; min / median /
    max are over images. The ideal maps are built untimed.
    """
    assert s.data_root is not None
    layout = coco_layout()
    order = list(layout.joint_order_index)
    results = []
    for flip in (False, True):
        per_image: dict[str, list[float]] = {k: [] for k in (*STEPS, "total")}
        people = []
        shape = None
        for i, (_, per_scale, tf) in enumerate(iter_ideal_cases(s.data_root, layout, flip, s.grouping_images)):
            det, tag = _maps(per_scale, tf, layout)
            shape = tuple(det.shape)
            if i == 0:
                for _ in range(s.warmup):
                    _fast_timed(det, tag, order, {})
            reps: dict[str, list[float]] = {k: [] for k in per_image}
            for _ in range(s.repeats):
                t: dict[str, float] = {}
                t0 = time.perf_counter()
                kp, _ = _fast_timed(det, tag, order, t)
                reps["total"].append(time.perf_counter() - t0)
                for k in STEPS:
                    reps[k].append(t.get(k, math.nan))
            people.append(int(np.asarray(kp).shape[0]))
            for k, v in reps.items():
                per_image[k].append(statistics.median(v) * 1e3)
        results += _grouping_results(flip, per_image, people, shape)
    return results


def _grouping_results(
    flip: bool, per_image: dict[str, list[float]], people: list[int], shape: tuple | None
) -> list[Result]:
    info = {"flip": flip, "images": len(people), "map_shape_last": shape, "mean_people": float(np.mean(people))}
    results = []
    for k in (*STEPS, "total"):
        results.append(
            Result(
                "grouping",
                f"flip {'on' if flip else 'off'}: {_LABELS[k]}",
                "ms/image",
                per_image[k],
                dict(info, step=k),
                note=f"{len(people)} images, {np.mean(people):.1f} people/img" if k == "total" else "",
            )
        )
    # Most coco-mini val images have no annotated person, so the median above is mostly empty maps.
    busy = [t for t, n in zip(per_image["total"], people, strict=True) if n > 0]
    if busy:
        results.append(
            Result(
                "grouping",
                f"flip {'on' if flip else 'off'}: total, images with people",
                "ms/image",
                busy,
                dict(info, step="total", images=len(busy)),
                note=f"{len(busy)} images, {np.mean([n for n in people if n > 0]):.1f} people/img",
            )
        )
    return results


# ---------------------------------------------------------------------------------------------- grouping_reference
def bench_grouping_reference(s: Settings) -> tuple[list[Result], bool]:
    """The fast grouping against ``bottomup.codec.reference.reference_group`` on the same ideal coco-mini val maps
    (flip off / on): ms per image, total and per step, of each; the speedup (x); whether both give identical
    keypoints and scores.

    One timed call per image and implementation (the reference takes up to seconds per image); min / median /
    max are over images. Prints, per flip setting, the per-step figures and ``identical outputs: True|False``.

    Returns:
        ``(results, identical)``: ``identical`` is ``False`` if any image's outputs differ.
    """
    assert s.data_root is not None
    layout = coco_layout()
    order = list(layout.joint_order_index)
    results = []
    all_identical = True
    for flip in (False, True):
        totals: dict[str, list[float]] = {"fast": [], "reference": []}
        steps: dict[str, dict[str, list[float]]] = {"fast": {}, "reference": {}}
        identical = True
        shape: tuple = ()
        for _, per_scale, tf in iter_ideal_cases(s.data_root, layout, flip, s.grouping_images):
            det, tag = _maps(per_scale, tf, layout)
            shape = tuple(det.shape)
            t: dict[str, float] = {}
            start = time.perf_counter()
            kp, sc = _fast_timed(det, tag, order, t)
            _record(time.perf_counter() - start, t, totals["fast"], steps["fast"])
            t = {}
            start = time.perf_counter()
            rkp, rsc = reference_group(det, tag, joint_order=order, timings=t)
            _record(time.perf_counter() - start, t, totals["reference"], steps["reference"])
            identical &= rkp.shape == kp.shape and np.array_equal(rkp, kp) and np.array_equal(rsc, sc)
        _print_comparison(flip, totals, steps, identical, shape)
        results += _comparison_results(flip, totals, steps, identical, shape)
        all_identical &= identical
    return results, all_identical


def _record(seconds: float, timings: dict[str, float], totals: list[float], steps: dict[str, list[float]]) -> None:
    """Append one call's seconds to ``totals`` and its seconds per step (``timings``) to ``steps``."""
    totals.append(seconds)
    for key, val in timings.items():
        steps.setdefault(key, []).append(val)


def _stats(values: list[float]) -> str:
    v = np.asarray(values) * 1e3
    return f"min {v.min():7.2f}  median {np.median(v):7.2f}  max {v.max():8.2f} ms"


def _speedups(totals: dict[str, list[float]]) -> tuple[float, float]:
    """Reference over fast: ratio of the median times per image, ratio of the total times."""
    median = float(np.median(totals["reference"]) / np.median(totals["fast"]))
    return median, float(np.sum(totals["reference"]) / np.sum(totals["fast"]))


def _print_comparison(
    flip: bool, totals: dict[str, list[float]], steps: dict[str, dict[str, list[float]]], identical: bool, shape: tuple
) -> None:
    print(f"\n== flip test {'on' if flip else 'off'}: {len(totals['fast'])} images, maps {shape} (last) ==")
    for impl in ("fast", "reference"):
        print(f"{impl:9s} total        {_stats(totals[impl])}")
        for key in STEPS:
            print(f"{'':9s} {key:12s} {_stats(steps[impl][key])}")
    speed, total_speed = _speedups(totals)
    print(f"speedup: median {speed:.1f}x, total time {total_speed:.1f}x; identical outputs: {identical}", flush=True)


def _comparison_results(
    flip: bool, totals: dict[str, list[float]], steps: dict[str, dict[str, list[float]]], identical: bool, shape: tuple
) -> list[Result]:
    on = "on" if flip else "off"
    info = {"flip": flip, "images": len(totals["fast"]), "map_shape_last": shape, "identical": identical}
    results = []
    for impl in ("fast", "reference"):
        for k in (*STEPS, "total"):
            values = totals[impl] if k == "total" else steps[impl][k]
            results.append(
                Result(
                    "grouping_reference",
                    f"flip {on}: {impl} {_LABELS[k]}",
                    "ms/image",
                    [v * 1e3 for v in values],
                    dict(info, implementation=impl, step=k),
                    note=f"{len(values)} images" if k == "total" else "",
                )
            )
    speed, total_speed = _speedups(totals)
    results.append(
        Result(
            "grouping_reference",
            f"flip {on}: speedup over the reference",
            "x",
            [speed],
            dict(info, median_speedup=speed, total_speedup=total_speed),
            note=f"ratio of medians; total time {total_speed:.1f}x; identical outputs: {identical}",
        )
    )
    return results

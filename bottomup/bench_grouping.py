"""Benchmark of grouping on ideal network outputs for the coco-mini val images.

Run from the repository root::

    python -m bottomup.bench_grouping [--data ../shared/data] [--images N]

For every image, the ground-truth people are encoded into ideal network outputs at the test-time
resolution (``bottomup.codec.ideal_outputs``), aggregated as at test time (``bottomup.inference``) with flip
test off and on, and grouped by the fast implementation (``bottomup.grouping``) and by the slow reference
(``tests/reference_grouping.py``). Prints per-image min / median / max milliseconds per step, the speedup, and
checks that both give identical outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from bottomup import grouping as G
from bottomup.codec import flip_outputs, ideal_outputs
from bottomup.inference import ResizeTransform, aggregate_outputs, resize_transform
from bottomup.keypoints import KeypointLayout

__all__ = ["coco_layout", "ideal_case", "iter_ideal_cases", "main"]

REPO = Path(__file__).resolve().parents[1]


def coco_layout() -> KeypointLayout:
    """COCO layout from ``conf/data/coco.yaml``."""
    return KeypointLayout.from_config(REPO / "conf" / "data" / "coco.yaml")


def ideal_case(
    people: np.ndarray,
    height: int,
    width: int,
    layout: KeypointLayout,
    *,
    input_size: int = 512,
    strides: tuple[int, ...] = (4, 2),
    flip: bool = False,
) -> tuple[list[tuple[float, list[torch.Tensor], list[torch.Tensor] | None]], ResizeTransform]:
    """Ideal raw outputs (scale 1) for ground-truth ``people (N, K, 3)`` in original-image px.

    Returns ``([(1.0, outputs, flip_outputs or None)], transform)``, the arguments of
    ``bottomup.inference.postprocess``.
    """
    tf = resize_transform(height, width, input_size)
    kp = np.asarray(people, dtype=np.float64).reshape(-1, layout.num_keypoints, 3).copy()
    if kp.size:
        xy = kp[..., :2] @ tf.matrix[:, :2].T + tf.matrix[:, 2]
        kp[..., :2] = xy
    w_in, h_in = tf.size
    outs = ideal_outputs(kp, (h_in, w_in), strides)
    flips = flip_outputs(outs, layout.flip_index, layout.num_keypoints) if flip else None
    return [(1.0, outs, flips)], tf


def iter_ideal_cases(coco_root: Path, layout: KeypointLayout, flip: bool, limit: int | None = None) -> Iterator:
    """Yield ``(image_id, per_scale_outputs, transform)`` for every coco-mini val2017 image (sorted ids)."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(coco_root / "annotations" / "person_keypoints_val2017.json"))
    for img_id in sorted(coco.getImgIds())[:limit]:
        info = coco.loadImgs(img_id)[0]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False))
        people = np.array([a["keypoints"] for a in anns if a.get("num_keypoints", 0) > 0], dtype=np.float64).reshape(
            -1, layout.num_keypoints, 3
        )
        per_scale, tf = ideal_case(people, info["height"], info["width"], layout, flip=flip)
        yield img_id, per_scale, tf


def _maps(per_scale, tf, layout):
    ((_, outs, flips),) = per_scale
    heat, tag = aggregate_outputs(
        outs, flips, num_keypoints=layout.num_keypoints, flip_index=layout.flip_index, project_size=tf.size
    )
    return heat[0].numpy(), tag[0].numpy()


def _fast_timed(det, tag, order, timings):
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
    for name, dt in (("nms_topk", t1 - t0), ("match", t2 - t1), ("adjust_refine", t3 - t2)):
        timings[name] = timings.get(name, 0.0) + dt
    return kp, scores


def _stats(values) -> str:
    v = np.asarray(values) * 1e3
    return f"min {v.min():7.2f}  median {np.median(v):7.2f}  max {v.max():8.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("BOTTOMUP_TEST_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--images", type=int, default=None, help="only the first N images")
    parser.add_argument("--no-reference", action="store_true", help="time the fast implementation only")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    from reference_grouping import reference_group

    torch.set_grad_enabled(False)
    layout = coco_layout()
    order = list(layout.joint_order_index)
    coco_root = Path(args.data) / "coco-mini"
    all_identical = True
    for flip in (False, True):
        steps = {"fast": {}, "reference": {}}
        totals = {"fast": [], "reference": []}
        identical = True
        for _, per_scale, tf in iter_ideal_cases(coco_root, layout, flip, args.images):
            det, tag = _maps(per_scale, tf, layout)
            t = {}
            start = time.perf_counter()
            kp, sc = _fast_timed(det, tag, order, t)
            totals["fast"].append(time.perf_counter() - start)
            for key, val in t.items():
                steps["fast"].setdefault(key, []).append(val)
            if not args.no_reference:
                t = {}
                start = time.perf_counter()
                rkp, rsc = reference_group(det, tag, joint_order=order, timings=t)
                totals["reference"].append(time.perf_counter() - start)
                for key, val in t.items():
                    steps["reference"].setdefault(key, []).append(val)
                same = rkp.shape == kp.shape and np.array_equal(rkp, kp) and np.array_equal(rsc, sc)
                identical &= same
        print(f"\n== flip test {'on' if flip else 'off'}: {len(totals['fast'])} images, maps {det.shape} (last) ==")
        for impl in ("fast", "reference"):
            if not totals[impl]:
                continue
            print(f"{impl:9s} total        {_stats(totals[impl])}")
            for key in ("nms_topk", "match", "adjust_refine"):
                print(f"{'':9s} {key:12s} {_stats(steps[impl][key])}")
        if totals["reference"]:
            speed = np.median(totals["reference"]) / np.median(totals["fast"])
            mean_speed = np.sum(totals["reference"]) / np.sum(totals["fast"])
            print(f"speedup: median {speed:.1f}x, total time {mean_speed:.1f}x; identical outputs: {identical}")
            all_identical &= identical
    return 0 if all_identical else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Ideal network outputs for the ground truth of a COCO-format annotation file: the first half of the codec's
round trip (ground truth -> ideal maps -> test-time aggregation -> decode -> the same people) on real data.

Used by ``tests/test_roundtrip.py`` and the grouping benchmark (``python -m bottomup.bench --only grouping``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from bottomup.codec.ideal import flip_outputs, ideal_outputs
from bottomup.core.keypoints import KeypointLayout
from bottomup.data.transforms import ResizeTransform, resize_transform

__all__ = ["ideal_case", "iter_ideal_cases"]


def ideal_case(
    people: np.ndarray,
    height: int,
    width: int,
    layout: KeypointLayout,
    *,
    input_size: int = 512,
    strides: tuple[int, ...] = (4, 2),
    flip: bool = False,
    udp: bool = False,
    trained_udp: bool | None = None,
) -> tuple[list[tuple[float, list[torch.Tensor], list[torch.Tensor] | None]], ResizeTransform]:
    """Ideal raw outputs (scale 1) for ground-truth ``people (N, K, 3)`` in original-image px.

    Args:
        udp: the test-time resize is the UDP one (``test.udp``; the returned transform is UDP, so ``postprocess``
            runs the UDP pipeline).
        trained_udp: the outputs are those of a network trained with UDP targets (``data.udp``; default ``udp``).
            ``udp != trained_udp`` gives the mismatched pairs (a UDP-trained network tested without UDP, ...).

    Returns ``([(1.0, outputs, flip_outputs or None)], transform)``, the arguments of
    ``bottomup.engine.inference.postprocess``.
    """
    tf = resize_transform(height, width, input_size, udp=udp)
    kp = np.asarray(people, dtype=np.float64).reshape(-1, layout.num_keypoints, 3).copy()
    if kp.size:
        xy = kp[..., :2] @ tf.matrix[:, :2].T + tf.matrix[:, 2]
        kp[..., :2] = xy
    w_in, h_in = tf.size
    outs = ideal_outputs(kp, (h_in, w_in), strides, udp=udp if trained_udp is None else trained_udp)
    flips = flip_outputs(outs, layout.flip_index, layout.num_keypoints) if flip else None
    return [(1.0, outs, flips)], tf


def iter_ideal_cases(
    coco_root: Path,
    layout: KeypointLayout,
    flip: bool,
    limit: int | None = None,
    *,
    udp: bool = False,
    trained_udp: bool | None = None,
) -> Iterator:
    """Yield ``(image_id, per_scale_outputs, transform)`` for every coco-mini val2017 image (sorted ids);
    ``udp`` / ``trained_udp`` as :func:`ideal_case`."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(coco_root / "annotations" / "person_keypoints_val2017.json"))
    for img_id in sorted(coco.getImgIds())[:limit]:
        info = coco.loadImgs(img_id)[0]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False))
        people = np.array([a["keypoints"] for a in anns if a.get("num_keypoints", 0) > 0], dtype=np.float64).reshape(
            -1, layout.num_keypoints, 3
        )
        per_scale, tf = ideal_case(
            people, info["height"], info["width"], layout, flip=flip, udp=udp, trained_udp=trained_udp
        )
        yield img_id, per_scale, tf

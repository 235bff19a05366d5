"""Round trip on real data: ground truth -> ideal network outputs -> test-time pipeline -> COCO AP.

For every coco-mini val2017 image, the annotated people are encoded into the outputs a perfect HigherHRNet
would give at the test-time resolution (resize as the pipeline does, Gaussian heatmaps at strides 4 and 2,
one constant tag per person), then decoded by the real post-model pipeline (aggregation, flip, projection,
grouping, mapping back to original pixels) and scored with pycocotools against the real annotations.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from bottomup.codec import AssociativeEmbeddingCodec
from bottomup.codec.grouping import group_keypoints
from bottomup.codec.reference import reference_group
from bottomup.data.ideal_cases import iter_ideal_cases
from bottomup.engine.inference import aggregate_outputs, postprocess


def _evaluate(coco_root, layout, flip: bool) -> tuple[float, int]:
    ann = coco_root / "annotations" / "person_keypoints_val2017.json"
    results = []
    codec = AssociativeEmbeddingCodec.from_layout(layout)  # the decode settings of conf/test/default.yaml
    for img_id, per_scale, tf in iter_ideal_cases(coco_root, layout, flip):
        keypoints, scores = postprocess(per_scale, tf, codec=codec)
        assert keypoints.shape == (len(scores), layout.num_keypoints, 3)
        for kp, score in zip(keypoints, scores, strict=True):
            results.append(
                {"image_id": img_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": float(score)}
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.array(layout.oks_sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), len(results)


@pytest.mark.parametrize("flip", [False, True], ids=["noflip", "flip"])
def test_roundtrip_ap_on_coco_mini(coco_root, coco_layout, flip):
    ap, num = _evaluate(coco_root, coco_layout, flip)
    print(f"round-trip AP (flip={flip}): {ap:.4f} with {num} detections")
    assert num >= 60  # 68 annotated people in 32 images
    assert ap >= 0.95


def _check_identical(coco_root, layout, flip: bool, limit: int | None) -> int:
    people = 0
    for _, per_scale, tf in iter_ideal_cases(coco_root, layout, flip, limit):
        ((_, outs, flips),) = per_scale
        heat, tag = aggregate_outputs(
            outs, flips, num_keypoints=layout.num_keypoints, flip_index=layout.flip_index, project_size=tf.size
        )
        det, tg = heat[0].numpy(), tag[0].numpy()
        kp, sc = group_keypoints(det, tg, joint_order=layout.joint_order_index)
        rkp, rsc = reference_group(det, tg, joint_order=layout.joint_order_index)
        assert kp.shape == rkp.shape
        np.testing.assert_array_equal(kp, rkp)
        np.testing.assert_array_equal(sc, rsc)
        people += kp.shape[0]
    return people


def test_fast_equals_reference_first_images(coco_root, coco_layout):
    assert _check_identical(coco_root, coco_layout, True, 10) > 0


@pytest.mark.slow
@pytest.mark.parametrize("flip", [False, True], ids=["noflip", "flip"])
def test_fast_equals_reference_all_images(coco_root, coco_layout, flip):
    assert _check_identical(coco_root, coco_layout, flip, None) >= 60

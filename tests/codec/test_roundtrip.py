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


def _evaluate(coco_root, layout, flip: bool, udp: bool = False) -> tuple[float, int]:
    ann = coco_root / "annotations" / "person_keypoints_val2017.json"
    results = []
    codec = AssociativeEmbeddingCodec.from_layout(layout)  # the decode settings of conf/test/default.yaml
    for img_id, per_scale, tf in iter_ideal_cases(coco_root, layout, flip, udp=udp):
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


@pytest.mark.parametrize("udp", [False, True], ids=["biased", "udp"])
@pytest.mark.parametrize("flip", [False, True], ids=["noflip", "flip"])
def test_roundtrip_ap_on_coco_mini(coco_root, coco_layout, flip, udp):
    """``udp``: UDP targets (``data.udp``) decoded by the UDP test time (``test.udp``): resize about pixel (0, 0),
    ``align_corners=True`` aggregation at the stride-2 maps, DARK adjust, refine without +0.5, UDP mapping back."""
    ap, num = _evaluate(coco_root, coco_layout, flip, udp)
    print(f"round-trip AP (flip={flip}, udp={udp}): {ap:.4f} with {num} detections")
    assert num >= 60  # 68 annotated people in 32 images
    assert ap >= 0.95


def _keypoint_errors(coco_root, layout, *, udp: bool, trained_udp: bool, flip: bool) -> np.ndarray:
    """Original-image px distance of every labelled ground-truth joint to the decoded joint of the decoded person
    nearest to that ground-truth person (mean over its labelled joints)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(coco_root / "annotations" / "person_keypoints_val2017.json"))
    codec = AssociativeEmbeddingCodec.from_layout(layout)
    errors = []
    cases = iter_ideal_cases(coco_root, layout, flip, udp=udp, trained_udp=trained_udp)
    for img_id, per_scale, tf in cases:
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False)) if a["num_keypoints"] > 0]
        if not anns:
            continue
        keypoints, _ = postprocess(per_scale, tf, codec=codec)
        assert len(keypoints), img_id
        for a in anns:
            gt = np.reshape(a["keypoints"], (-1, 3)).astype(np.float64)
            vis = gt[:, 2] > 0
            dist = np.linalg.norm(keypoints[:, vis, :2] - gt[None, vis, :2], axis=2)  # (N, V)
            errors.extend(dist[np.argmin(dist.mean(axis=1))].tolist())
    return np.asarray(errors)


@pytest.mark.parametrize("flip", [False, True], ids=["noflip", "flip"])
def test_udp_roundtrip_keypoint_error_and_the_mismatch(coco_root, coco_layout, flip):
    """Mean keypoint error of the round trip in original-image px: UDP train + UDP test, biased train + biased test
    (the consistent pairs), and the mismatches: UDP targets decoded by the biased test time (a UDP-trained network
    tested without ``test.udp``) and the other way round."""
    pairs = {
        "udp/udp": (True, True),
        "biased/biased": (False, False),
        "udp-trained/biased-test": (True, False),
        "biased-trained/udp-test": (False, True),
    }
    err = {
        name: _keypoint_errors(coco_root, coco_layout, udp=test, trained_udp=train, flip=flip)
        for name, (train, test) in pairs.items()
    }
    print(
        f"round-trip keypoint error, original px (flip={flip}): "
        + "; ".join(
            f"{k} mean {v.mean():.3f} median {np.median(v):.3f} p95 {np.percentile(v, 95):.3f} (n={v.size})"
            for k, v in err.items()
        )
    )
    assert err["udp/udp"].size == err["biased/biased"].size > 500
    assert err["udp/udp"].mean() < err["biased/biased"].mean()
    assert err["udp/udp"].mean() < err["udp-trained/biased-test"].mean()


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

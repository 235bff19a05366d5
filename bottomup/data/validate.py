"""Checks of a COCO-format keypoint annotation file before anything uses it (training and evaluation alike).

pycocotools indexes images and annotations by id in dicts, so a repeated id silently pairs one image's
annotations with another image's pixels; its OKS turns NaN for a NaN keypoint, and ``NaN < threshold`` is false, so
broken ground truth can raise AP. :func:`check_keypoint_annotations` refuses such files with one report that names
the file, the record and the field.

Errors (the file is refused): repeated image or annotation ids; an annotation of an image that is not listed;
keypoint lists of the wrong length; non-finite keypoint values; visibility other than 0, 1, 2; a labeled
keypoint (visibility > 0) at a negative coordinate; a non-finite or non-positive box side or area on an
annotation with labeled keypoints; non-positive image sizes.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any

__all__ = ["check_keypoint_annotations"]

_MAX_LISTED = 8


def _bad_number(value: Any) -> bool:
    return not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)


def _annotation_problems(ann: dict, num_keypoints: int | None) -> list[str]:
    aid = ann.get("id")
    out: list[str] = []
    kps = ann.get("keypoints")
    labeled = 0
    if kps:
        if num_keypoints is not None and len(kps) != 3 * num_keypoints:
            out.append(f"annotation id {aid}: 'keypoints' has {len(kps)} values, expected 3 * {num_keypoints}")
            return out
        for j in range(len(kps) // 3):
            x, y, v = kps[3 * j : 3 * j + 3]
            if _bad_number(x) or _bad_number(y) or _bad_number(v):
                out.append(f"annotation id {aid}: keypoint {j} is not finite ({x}, {y}, {v}) in 'keypoints'")
            elif v not in (0, 1, 2):
                out.append(f"annotation id {aid}: keypoint {j} has visibility {v} in 'keypoints' (0, 1 or 2)")
            elif v > 0:
                labeled += 1
                if x < 0 or y < 0:
                    out.append(f"annotation id {aid}: labeled keypoint {j} at a negative coordinate ({x}, {y})")
    if labeled and not ann.get("iscrowd", 0):
        box = ann.get("bbox")
        if box is not None and (len(box) != 4 or any(_bad_number(b) for b in box) or box[2] <= 0 or box[3] <= 0):
            out.append(f"annotation id {aid}: 'bbox' {box} needs a positive, finite width and height")
        area = ann.get("area")
        if area is not None and (_bad_number(area) or area <= 0):
            out.append(f"annotation id {aid}: 'area' {area} must be positive and finite")
    return out


def check_keypoint_annotations(data: dict, source: str | os.PathLike, num_keypoints: int | None = None) -> None:
    """Refuse a COCO keypoint annotation dict whose records cannot be trusted (see the module docstring).

    Args:
        data: the parsed JSON (``images``, ``annotations``, ``categories``).
        source: the file it came from, named in the message.
        num_keypoints: K, to check the length of every keypoint list; ``None`` skips that check.

    Raises:
        ValueError: one message naming ``source``, the number of problems, the first few (record id and field), and
            what to do.
    """
    images = data.get("images") or []
    annotations = data.get("annotations") or []
    problems: list[str] = []
    image_ids = Counter(img.get("id") for img in images)
    repeated = sorted(str(i) for i, n in image_ids.items() if n > 1)
    if repeated:
        problems.append(f"image ids {', '.join(repeated[:_MAX_LISTED])} appear more than once in 'images'")
    ann_ids = Counter(a.get("id") for a in annotations)
    repeated = sorted(str(i) for i, n in ann_ids.items() if n > 1)
    if repeated:
        problems.append(f"annotation ids {', '.join(repeated[:_MAX_LISTED])} appear more than once in 'annotations'")
    for img in images:
        for key in ("height", "width"):
            if key in img and (_bad_number(img[key]) or img[key] <= 0):
                problems.append(f"image id {img.get('id')}: '{key}' is {img[key]}")
    orphans = sorted({str(a.get("image_id")) for a in annotations if a.get("image_id") not in image_ids})
    if orphans:
        problems.append(f"annotations of image ids {', '.join(orphans[:_MAX_LISTED])}, which 'images' does not list")
    for ann in annotations:
        problems += _annotation_problems(ann, num_keypoints)
    if problems:
        listed = "; ".join(problems[:_MAX_LISTED])
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise ValueError(
            f"annotation file {os.fspath(source)} has {len(problems)} invalid record(s): {listed}{more}. Fix or "
            "remove these records (a repeated id pairs annotations with the wrong image; a non-finite or "
            "impossible keypoint corrupts the targets and the OKS of the evaluation)"
        )

"""Keypoint layouts: :mod:`bottomup.core.keypoints` (their home since the layout moved to the bottom floor, which
``codec`` and ``data`` both import); this module keeps the old import path working."""

from bottomup.core.keypoints import (
    COCO_OKS_SIGMAS,
    DEFAULT_OKS_SIGMA,
    KeypointLayout,
    flip_index_from_pairs,
    flip_pairs_from_names,
    indices_of,
    layout_from_category,
    mirror_name,
)

__all__ = [
    "COCO_OKS_SIGMAS", "DEFAULT_OKS_SIGMA", "KeypointLayout", "flip_index_from_pairs", "flip_pairs_from_names",
    "indices_of", "layout_from_category", "mirror_name",
]  # fmt: skip

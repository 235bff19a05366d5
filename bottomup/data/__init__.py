"""Training data: COCO-format keypoint data sets, augmentation, masks, image loading and batching."""

from __future__ import annotations

from typing import Any

from bottomup.data.io import ImageReadError, load_image

__all__ = ["AugmentParams", "ImageReadError", "KeypointDataset", "collate", "load_image"]


def __getattr__(name: str) -> Any:
    # The data set needs torch; loaded on first use so that image reading and the test-time resize
    # (``bottomup.data.io``, ``bottomup.data.transforms``) import without it (the torch-free runtime).
    if name in ("AugmentParams", "KeypointDataset", "collate"):
        from bottomup.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'bottomup.data' has no attribute {name!r}")

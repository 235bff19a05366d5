"""Training data: COCO-format keypoint data sets, augmentation, masks, image loading and batching.

Parts (each with its settings in ``bottomup.data.settings``): ``annotations`` (the file, checked, and per image its
people and ignore mask), ``augmentation`` (the random affine), ``encoding`` (the training targets), composed by
``dataset.KeypointDataset``; ``batch`` declares the sample / batch keys and collates.
"""

from __future__ import annotations

from typing import Any

from bottomup.data.io import ImageReadError, load_image

__all__ = [
    "AnnotationSettings", "AugmentParams", "Augmentation", "AugmentationSettings", "Batch", "CocoKeypointAnnotations",
    "ImageReadError", "KeypointDataset", "Sample", "TargetEncoder", "TargetSettings", "TrainingInputs", "collate",
    "load_image",
]  # fmt: skip

# name -> module; loaded on first use so that image reading and the test-time resize (``bottomup.data.io``,
# ``bottomup.data.transforms``) import without torch (the torch-free runtime) or pycocotools.
_LAZY = {
    "AnnotationSettings": "settings",
    "AugmentationSettings": "settings",
    "TargetSettings": "settings",
    "CocoKeypointAnnotations": "annotations",
    "AugmentParams": "augmentation",
    "Augmentation": "augmentation",
    "TargetEncoder": "encoding",
    "Batch": "batch",
    "Sample": "batch",
    "TrainingInputs": "batch",
    "collate": "batch",
    "KeypointDataset": "dataset",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"bottomup.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'bottomup.data' has no attribute {name!r}")

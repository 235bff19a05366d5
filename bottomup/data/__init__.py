"""Training data: COCO-format keypoint data sets, augmentation, masks, image loading and batching."""

from bottomup.data.dataset import AugmentParams, KeypointDataset, collate
from bottomup.data.io import ImageReadError, load_image

__all__ = ["AugmentParams", "ImageReadError", "KeypointDataset", "collate", "load_image"]

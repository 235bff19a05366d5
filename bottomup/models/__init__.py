"""Pose estimation networks: HRNet backbone + HigherHRNet associative-embedding head, ViTPose backbones under the
same head (``ViTPoseAE``); checkpoints -> state dicts (``weights``)."""

from bottomup.models.hrnet import HigherHRNet
from bottomup.models.vit import ViTPoseAE
from bottomup.models.weights import load_official_checkpoint

__all__ = ["HigherHRNet", "ViTPoseAE", "load_official_checkpoint"]

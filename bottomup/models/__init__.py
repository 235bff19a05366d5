"""Pose estimation networks: HRNet backbone + HigherHRNet associative-embedding head; checkpoints -> state dicts
(``weights``)."""

from bottomup.models.hrnet import HigherHRNet
from bottomup.models.weights import load_official_checkpoint

__all__ = ["HigherHRNet", "load_official_checkpoint"]

"""Pose estimation networks: HRNet backbone + HigherHRNet associative-embedding head."""

from bottomup.models.hrnet import HigherHRNet, load_official_checkpoint

__all__ = ["HigherHRNet", "load_official_checkpoint"]

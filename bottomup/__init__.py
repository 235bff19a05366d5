"""bottomup: bottom-up multi-person pose estimation with associative embedding (HigherHRNet).

``from bottomup import PoseEstimator`` gives the inference API (loaded lazily, so ``import bottomup`` stays light);
``from bottomup import DeployedPoseEstimator`` the runtime of exported models, which never imports torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DeployedPoseEstimator", "PoseEstimator", "Prediction"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("PoseEstimator", "Prediction"):
        from bottomup import api

        return getattr(api, name)
    if name == "DeployedPoseEstimator":
        from bottomup.deploy import runtime

        return runtime.DeployedPoseEstimator
    raise AttributeError(f"module 'bottomup' has no attribute {name!r}")

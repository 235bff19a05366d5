"""Python API: ``PoseEstimator`` turns an image (path or RGB array) into people with keypoints.

Example::

    from bottomup import PoseEstimator

    estimator = PoseEstimator.from_checkpoint("outputs/.../best.pt")
    pred = estimator("photo.jpg")
    pred.keypoints  # (N, K, 3): x, y in original-image pixels, keypoint score
    pred.scores     # (N,) person scores
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bottomup.inference import predict
from bottomup.keypoints import KeypointLayout

__all__ = ["Prediction", "PoseEstimator", "GROUPING_KEYS"]

GROUPING_KEYS = (
    "nms_kernel",
    "max_people",
    "detection_threshold",
    "tag_threshold",
    "use_detection_val",
    "ignore_too_much",
    "adjust",
    "refine",
)
_CONF = Path(__file__).resolve().parents[1] / "conf"


@dataclass(frozen=True)
class Prediction:
    """People found in one image.

    Attributes:
        keypoints: ``(N, K, 3)`` float64: ``x, y`` in original-image pixels, keypoint score (heatmap value;
            0 for a joint that was neither detected nor refined).
        scores: ``(N,)`` float32 person scores (mean keypoint score before refinement, official).
        keypoint_names: the K names, in channel order.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    keypoint_names: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def _load_input(image: str | os.PathLike | np.ndarray) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        from bottomup.data.io import load_image

        return load_image(image)
    if isinstance(image, np.ndarray):
        return image
    raise TypeError(f"image must be a path or an (H, W, 3) uint8 RGB numpy array, got {type(image).__name__}")


def _as_config(cfg: Any) -> Any:
    """A DictConfig from a DictConfig, a YAML string or a mapping."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return cfg
    return OmegaConf.create(cfg if isinstance(cfg, str) else dict(cfg))


class PoseEstimator:
    """Bottom-up multi-person pose estimation with the official HigherHRNet test-time pipeline.

    Args:
        model: network ``x (1, 3, h, w) -> [outputs per stride]`` (e.g. ``bottomup.models.HigherHRNet``);
            put in eval mode and moved to ``device``.
        layout: the keypoint layout (names, flip pairs, joint order); or give ``num_keypoints`` (channel-order
            names ``"0".."K-1"``, no flip pairs) -- then flip test needs ``flip_index``.
        input_size: short side of the network input at scale 1 (512 / 640).
        scales: test scales (official ``TEST.SCALE_FACTOR``).
        flip_test: average with the mirrored image (needs flip pairs).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA if available, else CPU).
        precision: ``"fp32"`` (default, exact), ``"bf16"`` or ``"fp16"`` autocast of the network
            (``bottomup.inference.predict``).
        channels_last: run the network in NHWC memory format.
        fold_bn: run a prepared copy of the network (``bottomup.models.fast.prepare_for_inference``):
            BatchNorm folded into the convolutions and weights cast to ``precision`` instead of autocast
            (bf16 + channels_last W32-512 forward on 2 AVX-512 cores: 0.27 s against 0.28 s with autocast).
        compile: also ``torch.compile`` that copy (implies the prepared copy; the first image compiles).
        **grouping: ``bottomup.grouping.group_keypoints`` settings (``GROUPING_KEYS``).

    Raises:
        ValueError: unknown grouping keys, or inconsistent layout.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        layout: KeypointLayout | None = None,
        num_keypoints: int | None = None,
        flip_index: Sequence[int] | None = None,
        joint_order: Sequence[int] | None = None,
        input_size: int = 512,
        scales: Sequence[float] = (1.0,),
        flip_test: bool = True,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        fold_bn: bool = False,
        compile: bool = False,
        **grouping: Any,
    ) -> None:
        unknown = set(grouping) - set(GROUPING_KEYS)
        if unknown:
            raise ValueError(f"unknown grouping settings {sorted(unknown)}; allowed: {list(GROUPING_KEYS)}")
        if layout is None:
            if num_keypoints is None:
                raise ValueError("give a KeypointLayout (layout=...) or num_keypoints")
            layout = KeypointLayout(keypoint_names=tuple(str(i) for i in range(num_keypoints)))
        self.layout = layout
        k = layout.num_keypoints
        self.flip_index = list(layout.flip_index if flip_index is None else flip_index)
        self.joint_order = list(layout.joint_order_index if joint_order is None else joint_order)
        for name, value in (("flip_index", self.flip_index), ("joint_order", self.joint_order)):
            if sorted(value) != list(range(k)):
                raise ValueError(f"{name} must be a permutation of range({k}), got {value}")
        self.input_size = int(input_size)
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be non-empty and positive, got {list(scales)}")
        self.flip_test = bool(flip_test)
        self.grouping = dict(grouping)
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        from bottomup.inference import AUTOCAST_DTYPES

        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f"precision must be one of {list(AUTOCAST_DTYPES)}, got {precision!r}")
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.fold_bn, self.compile = bool(fold_bn), bool(compile)
        if self.fold_bn or self.compile:
            from bottomup.models.fast import prepare_for_inference

            self.model = prepare_for_inference(
                model.to(self.device),
                precision=precision,
                channels_last=self.channels_last,
                fold_bn=self.fold_bn,
                compile=self.compile,
            )
        else:
            self.model = model.to(self.device).eval()
            if self.channels_last:
                self.model = self.model.to(memory_format=torch.channels_last)

    def __call__(self, image: str | os.PathLike | np.ndarray) -> Prediction:
        """Detect people.

        Args:
            image: image file path, or ``(H, W, 3)`` uint8 RGB array.

        Returns:
            ``Prediction`` in original-image pixels.

        Raises:
            bottomup.data.io.ImageReadError: missing / unreadable file.
            TypeError / ValueError: array of the wrong type, shape or dtype.
        """
        rgb = _load_input(image)
        keypoints, scores = predict(
            self.model,
            rgb,
            num_keypoints=self.layout.num_keypoints,
            joint_order=self.joint_order,
            input_size=self.input_size,
            scales=self.scales,
            flip_index=self.flip_index if self.flip_test else None,
            grouping=self.grouping,
            device=self.device,
            precision=self.precision,
            channels_last=self.channels_last,
        )
        return Prediction(keypoints=keypoints, scores=scores, keypoint_names=self.layout.keypoint_names)

    # ------------------------------------------------------------------ construction from files
    @staticmethod
    def _compose(experiment: str | None, overrides: Sequence[str] = ()) -> Any:
        from hydra import compose, initialize_config_dir

        args = list(overrides) + ([f"experiment={experiment}"] if experiment else [])
        with initialize_config_dir(config_dir=str(_CONF), version_base="1.3"):
            return compose(config_name="train", overrides=args)

    @staticmethod
    def _build_model(cfg: Any) -> torch.nn.Module:
        from hydra.utils import instantiate

        return instantiate(cfg.model, pretrained=None) if "pretrained" in cfg.model else instantiate(cfg.model)

    @classmethod
    def from_config(cls, cfg: Any, model: torch.nn.Module | None = None, **overrides: Any) -> PoseEstimator:
        """Build from a (resolved or composed) project config: ``cfg.model`` (``_target_`` + arguments),
        ``cfg.data`` (layout, ``input_size``) and ``cfg.grouping``. ``overrides`` replace ``PoseEstimator``
        arguments (``input_size``, ``scales``, ``flip_test``, ``device``, grouping keys)."""
        cfg = _as_config(cfg)
        data, group = cfg.data, cfg.get("grouping", {}) or {}
        layout = KeypointLayout.from_config(data)
        if model is None:
            model = cls._build_model(cfg)
        kwargs: dict[str, Any] = {k: group[k] for k in GROUPING_KEYS if k in group}
        kwargs["input_size"] = int(group.get("input_size", data.input_size))
        kwargs["scales"] = list(group.get("scales", [1.0]))
        kwargs["flip_test"] = bool(group.get("flip_test", True))
        kwargs["precision"] = str(group.get("precision", "fp32"))
        kwargs["channels_last"] = bool(group.get("channels_last", False))
        kwargs["fold_bn"] = bool(group.get("fold_bn", False))
        kwargs["compile"] = bool(group.get("compile", False))
        kwargs.update(overrides)
        return cls(model, layout=layout, **kwargs)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        experiment: str | None = None,
        device: str | torch.device | None = None,
        **overrides: Any,
    ) -> PoseEstimator:
        """Load a project checkpoint or an official HigherHRNet ``.pth``.

        * Project checkpoint: a dict with ``"model"`` (state_dict) and ``"config"`` (the resolved Hydra
          config as a dict or YAML string); ``experiment`` is not needed (if given, the config is composed
          from ``conf/`` with that experiment instead).
        * Official checkpoint (raw state_dict, e.g. ``pose_higher_hrnet_w32_512.pth``): needs ``experiment``
          (e.g. ``"higherhrnet_w32"``) to build the matching model and settings.

        Args:
            path: local file (loaded with ``torch.load(weights_only=True)`` on CPU).
            experiment: name in ``conf/experiment``.
            device: where to run.
            **overrides: ``PoseEstimator`` arguments (``input_size``, ``scales``, ``flip_test``, grouping keys).

        Raises:
            FileNotFoundError: missing file.
            ValueError: an official checkpoint without ``experiment``, or a checkpoint of unknown structure.
            RuntimeError: weights that do not fit the configured model (message lists the mismatches).
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path!r}")
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
            cfg = cls._compose(experiment) if experiment else obj.get("config")
            if cfg is None:
                raise ValueError(
                    f"checkpoint {path!r} has no 'config'; pass experiment=<name in conf/experiment> to build the model"
                )
            cfg = _as_config(cfg)
            model = cls._build_model(cfg)
            state = dict(obj["model"])
            if state and all(k.startswith("module.") for k in state):
                state = {k[len("module.") :]: v for k, v in state.items()}
            model.load_state_dict(state, strict=True)
            return cls.from_config(cfg, model=model, device=device, **overrides)
        if not isinstance(obj, Mapping):
            raise ValueError(f"checkpoint {path!r} is a {type(obj).__name__}, not a state_dict or a project checkpoint")
        if experiment is None:
            raise ValueError(
                f"{path!r} looks like an official HigherHRNet state_dict (no 'model'/'config' keys); "
                "pass experiment=<name in conf/experiment>, e.g. experiment='higherhrnet_w32'"
            )
        from bottomup.models import load_official_checkpoint

        cfg = cls._compose(experiment)
        model = cls._build_model(cfg)
        load_official_checkpoint(model, obj)
        return cls.from_config(cfg, model=model, device=device, **overrides)

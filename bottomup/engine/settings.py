"""Test-time and trainer settings: the one home of ``conf/test``'s and ``conf/trainer``'s keys, their defaults,
checks and meaning (torch-free).

:class:`TestSettings` holds how an image goes through the network (input size, scales, flip, precision, memory
format, folded / compiled copy) and, as a :class:`bottomup.codec.settings.GroupingSettings`, how the maps are
grouped. The estimator (``bottomup.api.PoseEstimator``, every backend), the evaluation, the export metadata and
``python -m bottomup.infer`` take the object; ``bottomup.build`` registers its flat form (grouping keys beside the
others, as ``conf/test/default.yaml`` writes them) as the Hydra schema of the ``test`` group.

:class:`TrainerSettings` holds how a training run runs (length, device, arithmetic, logging, evaluation); the
training loop (``bottomup.engine.training``) takes it, and it is the schema of the ``trainer`` group.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bottomup.codec.settings import GROUPING_KEYS, GroupingSettings
from bottomup.core.precision import AUTO, PRECISIONS

__all__ = ["MAX_INPUT_SIDE", "MIN_INPUT_SIDE", "TEST_KEYS", "TestSettings", "TrainerSettings", "check_scales"]

#: Bounds of the network input's short side at any test scale (``input_size * scale``), pixels: below, the resize
#: degenerates; above, one W32 forward needs tens of GB.
MIN_INPUT_SIDE, MAX_INPUT_SIDE = 32, 4096


def check_scales(scales: Sequence[float], input_size: int) -> tuple[float, ...]:
    """The test scales as floats if each is finite and ``input_size * scale`` is within
    [:data:`MIN_INPUT_SIDE`, :data:`MAX_INPUT_SIDE`] pixels.

    Raises:
        ValueError: empty, non-finite, non-positive or out-of-range scales, or a non-positive ``input_size``
            (the message names ``test.scales`` / ``--scales`` and the allowed range).
    """
    if input_size <= 0:
        raise ValueError(f"input_size must be positive (test.input_size), got {input_size}")
    values = tuple(float(s) for s in scales)
    lo, hi = MIN_INPUT_SIDE / input_size, MAX_INPUT_SIDE / input_size
    if not values or not all(math.isfinite(s) and lo <= s <= hi for s in values):
        raise ValueError(
            f"scales (test.scales / --scales) must be non-empty and finite, each within [{lo:.3g}, {hi:.3g}] so "
            f"that input_size * scale is {MIN_INPUT_SIDE}-{MAX_INPUT_SIDE} px at input_size={input_size}; got "
            f"{list(scales)}"
        )
    return values


@dataclass(frozen=True)
class TestSettings:
    """The test-time pipeline's settings (official HigherHRNet ``TEST``; ``conf/test/default.yaml``).

    Attributes:
        input_size: short side of the network input at scale 1, pixels (official ``INPUT_SIZE``; the long side
            follows the aspect ratio, rounded up to a multiple of 64).
        scales: test scales, e.g. ``(2.0, 1.0, 0.5)`` (official ``SCALE_FACTOR``); ``input_size * scale`` must be
            32-4096 px.
        flip_test: average with the mirrored image (official ``FLIP_TEST``; needs the layout's flip pairs).
        precision: network arithmetic, ``"fp32"`` (exact), ``"bf16"`` or ``"fp16"`` (autocast, or the weights'
            dtype with ``fold_bn``); ``"auto"``: the fastest correct path on the device, by measurement --
            precision, ``channels_last`` and ``fold_bn`` together (``bottomup.models.fast.measured_fast_path``;
            ``channels_last`` / ``fold_bn`` set to true keep only the paths with them). The torch backend resolves it
            when it is built (its settings then hold the choice).
        channels_last: NHWC memory format for the network (faster with oneDNN and on GPUs).
        fold_bn: run a copy with BatchNorm folded into the convolutions and the weights in ``precision``.
        compile: ``torch.compile`` that copy (implies it; the first image compiles).
        udp: unbiased data processing at test time (Huang et al. CVPR 2020; MMPose 0.x ``use_udp=True`` of
            ``BottomUpGetImgSize`` / ``BottomUpResizeAlign``, ``AssociativeEmbedding.forward_test``'s
            ``get_group_preds`` and ``HeatmapParser``), for models trained with ``data.udp``: the resize scales
            about pixel ``(0, 0)`` by ``(size - 1) / (side - 1)`` instead of centring the image
            (``bottomup.data.transforms.resize_transform``); the stages, flip and scales are aggregated with
            ``align_corners=True`` at the highest-resolution output of the largest scale, not projected to the
            input size; the decode adjusts by the DARK step and refines without +0.5
            (``bottomup.codec.grouping``); keypoints map back by ``box / (map side - 1)``
            (``bottomup.data.transforms.to_original``). ``false`` (default): the official HigherHRNet pipeline.
            ``conf/test`` sets it to ``data.udp`` (how the network was trained) unless given.
        grouping: the decode settings (:class:`GroupingSettings`).

    Raises:
        ValueError: a value out of its range (the message names the ``test.*`` key).
    """

    __test__ = False  # a settings class, not a pytest test class

    input_size: int = 512
    scales: tuple[float, ...] = (1.0,)
    flip_test: bool = True
    precision: str = "fp32"
    channels_last: bool = False
    fold_bn: bool = False
    compile: bool = False
    udp: bool = False
    grouping: GroupingSettings = field(default_factory=GroupingSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "scales", check_scales(self.scales, self.input_size))
        if str(self.precision) != AUTO and str(self.precision) not in PRECISIONS:
            raise ValueError(f"test.precision must be one of {[AUTO, *PRECISIONS]}, got {self.precision!r}")
        object.__setattr__(self, "precision", str(self.precision))
        for name in ("flip_test", "channels_last", "fold_bn", "compile", "udp"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        if not isinstance(self.grouping, GroupingSettings):
            raise TypeError(f"grouping must be a GroupingSettings, got {type(self.grouping).__name__}")

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], *, strict: bool = False) -> TestSettings:
        """The settings from their flat form (``conf/test``: grouping keys beside the others); keys it does not
        hold keep their defaults, other keys are ignored unless ``strict``.

        Raises:
            ValueError: with ``strict``, an unknown key (the message lists the allowed ones); a value out of range.
        """
        if strict:
            unknown = set(values) - set(TEST_KEYS)
            if unknown:
                raise ValueError(f"unknown grouping / test settings {sorted(unknown)}; allowed: {list(TEST_KEYS)}")
        own = {k: values[k] for k in _OWN_KEYS if k in values}
        return cls(**own, grouping=GroupingSettings.from_mapping(values))

    def flat(self) -> dict[str, Any]:
        """The flat form (``conf/test/default.yaml``'s keys and order): ``scales`` as a list."""
        out = {k: getattr(self, k) for k in _OWN_KEYS}
        out["scales"] = list(self.scales)
        return {**out, **self.grouping.as_dict()}

    def replace(self, **changes: Any) -> TestSettings:
        """A copy with ``changes``: any test or grouping key (grouping keys go into :attr:`grouping`), checked
        again. ``scales`` may be any sequence.

        Raises:
            ValueError: an unknown key (the message lists the allowed ones) or a value out of its range.
        """
        if not changes:
            return self
        unknown = set(changes) - set(TEST_KEYS)
        if unknown:
            raise ValueError(f"unknown grouping / test settings {sorted(unknown)}; allowed: {list(TEST_KEYS)}")
        own = {k: v for k, v in changes.items() if k in _OWN_KEYS}
        grouping = self.grouping.replace(**{k: v for k, v in changes.items() if k in GROUPING_KEYS})
        return dataclasses.replace(self, **own, grouping=grouping)


_OWN_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TestSettings) if f.name != "grouping")
#: Every key of the flat form: the test-time keys, then :data:`bottomup.codec.settings.GROUPING_KEYS`.
TEST_KEYS: tuple[str, ...] = _OWN_KEYS + GROUPING_KEYS


@dataclass(frozen=True)
class TrainerSettings:
    """How a training run runs (``conf/trainer/default.yaml``; official HigherHRNet ``TRAIN`` / ``PRINT_FREQ``).

    Attributes:
        epochs: passes over the training set (official ``END_EPOCH``).
        steps_per_epoch: cap on the iterations of one epoch (smoke runs); ``None``: the whole data set.
        max_steps: stop after this many optimiser steps in all; ``None``: no cap.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (autocast; fp16 with loss scaling) or ``"auto"`` (bf16 where
            the device computes it natively, else fp32).
        channels_last: NHWC memory format for the network and its inputs.
        compile: ``torch.compile`` the training network.
        grad_clip: largest gradient norm (clipped above it); ``None`` or 0: off.
        sync_bn: SyncBatchNorm under ``torchrun`` / DDP (CUDA only).
        dist_timeout: seconds a process waits for the others in a collective before it fails (a hung rank).
        log_every: steps between TensorBoard scalar writes.
        image_every: steps between TensorBoard pictures; 0: off.
        eval_every: epochs between COCO evaluations (each keeps ``best.pt``); 0: off.
        eval_max_images: evaluate on the first N validation images only; ``None``: all.
        progress: a tqdm progress bar (rank 0).

    Raises:
        ValueError: a value out of its range (the message names the ``trainer.*`` key).
    """

    epochs: int = 300
    steps_per_epoch: int | None = None
    max_steps: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    grad_clip: float | None = None
    sync_bn: bool = False
    dist_timeout: float = 1800.0
    log_every: int = 10
    image_every: int = 0
    eval_every: int = 0
    eval_max_images: int | None = None
    progress: bool = True

    #: The config node that holds these keys (named in messages).
    config_node = "trainer"

    def __post_init__(self) -> None:
        if str(self.precision) != AUTO and str(self.precision) not in PRECISIONS:
            raise ValueError(f"trainer.precision must be one of {[AUTO, *PRECISIONS]}, got {self.precision!r}")
        object.__setattr__(self, "precision", str(self.precision))
        for key in ("epochs", "steps_per_epoch", "max_steps", "log_every"):
            value = getattr(self, key)
            if value is not None and int(value) < 1:
                raise ValueError(f"trainer.{key} must be >= 1 (or null where allowed), got {value}")
        for key in ("image_every", "eval_every"):
            if int(getattr(self, key) or 0) < 0:
                raise ValueError(f"trainer.{key} must be >= 0 (0 = off), got {getattr(self, key)}")
        if self.eval_max_images is not None and int(self.eval_max_images) < 1:
            raise ValueError(f"trainer.eval_max_images must be >= 1 or null (all), got {self.eval_max_images}")
        if not float(self.dist_timeout) > 0:
            raise ValueError(f"trainer.dist_timeout must be a positive number of seconds, got {self.dist_timeout}")
        if self.grad_clip is not None and not float(self.grad_clip) >= 0:
            raise ValueError(f"trainer.grad_clip must be >= 0 or null (0 / null = off), got {self.grad_clip}")
        for key in ("epochs", "log_every"):
            object.__setattr__(self, key, int(getattr(self, key)))
        for key in ("steps_per_epoch", "max_steps", "eval_max_images"):
            if getattr(self, key) is not None:
                object.__setattr__(self, key, int(getattr(self, key)))
        for key in ("image_every", "eval_every"):
            object.__setattr__(self, key, int(getattr(self, key) or 0))
        for key in ("channels_last", "compile", "sync_bn", "progress"):
            object.__setattr__(self, key, bool(getattr(self, key)))
        object.__setattr__(self, "device", str(self.device))
        object.__setattr__(self, "dist_timeout", float(self.dist_timeout))
        if self.grad_clip is not None:
            object.__setattr__(self, "grad_clip", float(self.grad_clip))

    def replace(self, **changes: Any) -> TrainerSettings:
        """A copy with ``changes``, checked again.

        Raises:
            TypeError: an unknown key; ValueError: a value out of its range.
        """
        return dataclasses.replace(self, **changes)

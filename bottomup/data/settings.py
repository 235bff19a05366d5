"""Typed settings of the training data: one frozen dataclass per concern of ``conf/data/*.yaml``.

Each class holds its config keys' defaults, checks and documentation, once:

* :class:`AnnotationSettings`: which images of the annotation file are used (``data.max_images``);
* :class:`AugmentationSettings`: the random affine of training (the ``data.augmentation`` node);
* :class:`TargetSettings`: the training targets (``data.input_size``, ``data.sigma``, ``data.max_people``,
  ``data.joint_rounding``, the scale-aware sigma keys and ``data.udp``, which also switches the augmentation's
  geometry).

A field's name is its config key (under :attr:`config_node`), so ``bottomup.build`` fills a settings object from a
config node by field name; a key the config lacks (e.g. in the config saved by an older checkpoint) takes the
default here. The checks run in ``__post_init__`` and raise ``ValueError`` naming the config key. This module
imports neither torch nor the config library.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from bottomup.codec.targets import ROUNDINGS

__all__ = [
    "SCALE_TYPES", "MASK_WARPS", "AnnotationSettings", "AugmentationSettings", "TargetSettings", "check_strides",
]  # fmt: skip

#: Values of ``data.augmentation.scale_type`` (official ``DATASET.SCALE_TYPE``).
SCALE_TYPES = ("short", "long")
#: Values of ``data.augmentation.mask_warp``.
MASK_WARPS = ("uint8", "float")


def _real(key: str, value: Any, *, minimum: float | None = None, positive: bool = False) -> float:
    """``value`` as a finite float, at least ``minimum`` (or > 0 with ``positive``).

    Raises:
        ValueError: not a finite real number or out of range (the message names ``key``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{key} must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key} must be >= {minimum}, got {value!r}")
    return float(value)


def _count(key: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (an integral float such as ``512.0`` is accepted).

    Raises:
        ValueError: not an integral number or below ``minimum`` (the message names ``key``).
    """
    integral = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not integral or value != int(value) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _flag(key: str, value: Any) -> bool:
    """``value`` if it is a bool.

    Raises:
        ValueError: anything else, e.g. the string ``"false"`` (the message names ``key``).
    """
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``.

    Raises:
        ValueError: another value (the message names ``key`` and lists ``choices``).
    """
    if value not in choices:
        raise ValueError(f"{key} must be one of {choices}, got {value!r}")
    return str(value)


def _set(obj: Any, **values: Any) -> None:
    """Store checked values on a frozen dataclass (from its ``__post_init__``)."""
    for name, value in values.items():
        object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class AnnotationSettings:
    """Which images of the annotation file (``data.train_ann``) the training data set uses.

    Attributes:
        max_images: keep only the first this many usable images, in the file's image order (debugging,
            overfitting a few images); ``None``: all (``data.max_images``).

    Raises:
        ValueError: ``max_images`` not ``None`` or an integer >= 1.
    """

    config_node: ClassVar[str] = "data"

    max_images: int | None = None

    def __post_init__(self) -> None:
        if self.max_images is not None:
            _set(self, max_images=_count("data.max_images", self.max_images))


@dataclass(frozen=True)
class AugmentationSettings:
    """The random affine of training (official HigherHRNet ``RandomAffineTransform`` + ``RandomHorizontalFlip``;
    frames and matrix in ``bottomup.data.transforms``). Validation uses the identity instead.

    Attributes:
        max_rotation: degrees; the rotation is uniform in ``[-max_rotation, max_rotation]``, positive =
            counter-clockwise on screen.
        min_scale, max_scale: the crop side is the reference side (below) times a scale uniform in
            ``[min_scale, max_scale]``; > 1 zooms out.
        max_translate: the crop centre moves by a shift uniform in ``+-max_translate`` px at the official 200-px
            reference scale, i.e. ``+-max_translate * crop_side / 200`` original px, per axis.
        flip_prob: probability of a horizontal flip (joints permuted by the layout's flip index).
        scale_type: reference side of the crop: ``"short"`` (official default, the image's short side) or
            ``"long"`` (the long side: at scale 1 the whole image is in view, the padding masked).
        mask_warp: how the ignore mask is warped: ``"uint8"`` (official: ``uint8(mask * 255)`` warped bilinearly,
            ``/ 255 > 0.5``, so a bilinear value of exactly 0.5 = 128/255 is kept) or ``"float"`` (the 0/1 float
            mask warped, ``> 0.5``; drops those pixels).

    Each is ``data.augmentation.<name>``.

    Raises:
        ValueError: a negative ``max_rotation`` / ``max_translate``, not ``0 < min_scale <= max_scale``,
            ``flip_prob`` outside ``[0, 1]``, or an unknown ``scale_type`` / ``mask_warp``.
    """

    config_node: ClassVar[str] = "data.augmentation"

    max_rotation: float = 30.0
    min_scale: float = 0.75
    max_scale: float = 1.5
    max_translate: float = 40.0
    flip_prob: float = 0.5
    scale_type: str = "short"
    mask_warp: str = "uint8"

    def __post_init__(self) -> None:
        key = f"{self.config_node}."
        min_scale = _real(key + "min_scale", self.min_scale, positive=True)
        max_scale = _real(key + "max_scale", self.max_scale, positive=True)
        if not min_scale <= max_scale:
            raise ValueError(f"need 0 < {key}min_scale <= {key}max_scale, got {self.min_scale}, {self.max_scale}")
        flip_prob = _real(key + "flip_prob", self.flip_prob, minimum=0.0)
        if flip_prob > 1:
            raise ValueError(f"{key}flip_prob must be in [0, 1], got {self.flip_prob!r}")
        _set(
            self,
            max_rotation=_real(key + "max_rotation", self.max_rotation, minimum=0.0),
            min_scale=min_scale,
            max_scale=max_scale,
            max_translate=_real(key + "max_translate", self.max_translate, minimum=0.0),
            flip_prob=flip_prob,
            scale_type=_choice(key + "scale_type", self.scale_type, SCALE_TYPES),
            mask_warp=_choice(key + "mask_warp", self.mask_warp, MASK_WARPS),
        )


@dataclass(frozen=True)
class TargetSettings:
    """The training targets (``bottomup.codec.AssociativeEmbeddingCodec.encode``): Gaussian heatmaps per output
    stride and tag indices at the first stride.

    Attributes:
        input_size: S, side of the square network input in pixels (a multiple of every output stride).
        sigma: Gaussian std of the heatmaps in heatmap px, the same at every stride (official).
        max_people: M, tag rows per image; an image with more people keeps the M most complete.
        joint_rounding: heatmap pixel of a joint: ``"trunc"`` (official ``int()``: a joint at ``-1 < x < 0`` lands
            on pixel 0 and is kept) or ``"floor"`` (the pixel containing it; ``bottomup.codec.targets``).
        scale_aware_sigma: each person's sigma from its box (official ``DATASET.SCALE_AWARE_SIGMA``):
            ``max(bbox w, bbox h) / base_size * base_sigma`` heatmap px, ``int(round(that + 0.5))`` with
            ``int_sigma``, divided by the augmentation's scale factor, the same at every stride; ``sigma`` is then
            unused for the targets. Needs a positive ``bbox`` on every person with labeled keypoints.
        base_size: box side in original px that gets ``base_sigma`` (official ``DATASET.BASE_SIZE``).
        base_sigma: heatmap px (official ``DATASET.BASE_SIGMA``); ``None``: ``sigma`` (stored resolved).
        int_sigma: round the scale-aware sigma to an integer (official ``DATASET.INT_SIGMA``).
        udp: unbiased data processing (Huang et al., "The Devil is in the Details", CVPR 2020; MMPose 0.x
            ``use_udp=True`` of ``BottomUpRandomAffine`` and ``BottomUpGenerateTarget``). Changes the augmentation
            and the targets: the crop is centred at ``((W - 1) / 2, (H - 1) / 2)`` + the translation and maps with
            sizes counted as ``size - 1`` (``bottomup.data.transforms.udp_affine_matrix``), every output with its
            own ``(S' - 1) / (S - 1)`` of the input frame (not ``1 / stride``), and each Gaussian is centred on the
            joint's continuous position instead of its pixel (``bottomup.codec.targets``). A model trained so
            should be tested with ``test.udp=true``. ``false`` (default): the official HigherHRNet geometry and
            targets, unchanged.

    Each is ``data.<name>``.

    Raises:
        ValueError: ``input_size``, ``max_people`` not integers >= 1, ``sigma`` not > 0, an unknown
            ``joint_rounding``, a flag that is not a bool, or, with ``scale_aware_sigma``, ``base_size`` or
            ``base_sigma`` not > 0.
    """

    config_node: ClassVar[str] = "data"

    input_size: int = 512
    sigma: float = 2.0
    max_people: int = 30
    joint_rounding: str = "trunc"
    scale_aware_sigma: bool = False
    base_size: float = 256.0
    base_sigma: float | None = None
    int_sigma: bool = False
    udp: bool = False

    def __post_init__(self) -> None:
        sigma = _real("data.sigma", self.sigma, positive=True)
        scale_aware = _flag("data.scale_aware_sigma", self.scale_aware_sigma)
        base_size = _real("data.base_size", self.base_size)
        base_sigma = sigma if self.base_sigma is None else _real("data.base_sigma", self.base_sigma)
        if scale_aware and not (base_size > 0 and base_sigma > 0):
            raise ValueError(
                f"scale-aware sigma needs data.base_size > 0 and data.base_sigma > 0, got {self.base_size}, "
                f"{self.base_sigma}"
            )
        _set(
            self,
            input_size=_count("data.input_size", self.input_size),
            sigma=sigma,
            max_people=_count("data.max_people", self.max_people),
            joint_rounding=_choice("data.joint_rounding", self.joint_rounding, ROUNDINGS),
            scale_aware_sigma=scale_aware,
            base_size=base_size,
            base_sigma=base_sigma,
            int_sigma=_flag("data.int_sigma", self.int_sigma),
            udp=_flag("data.udp", self.udp),
        )


def check_strides(input_size: int, strides: Sequence[int]) -> tuple[int, ...]:
    """The output strides (``model.strides``) as ints, checked against the input side (``data.input_size``).

    Raises:
        ValueError: no stride, or ``input_size`` not a positive multiple of every stride.
    """
    out = tuple(int(s) for s in strides)
    if not out:
        raise ValueError("model.strides must name at least one output stride")
    for s in out:
        if s <= 0 or input_size % s:
            raise ValueError(
                f"data.input_size {input_size} must be a positive multiple of every stride {s} (model.strides)"
            )
    return out

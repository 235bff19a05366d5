"""Test-time settings: the one home of ``conf/test``'s keys, their defaults, checks and meaning (torch-free).

:class:`TestSettings` holds how an image goes through the network (input size, scales, flip, precision, memory
format, folded / compiled copy) and, as a :class:`bottomup.codec.settings.GroupingSettings`, how the maps are
grouped. The estimator (``bottomup.api.PoseEstimator``, every backend), the evaluation, the export metadata and
``python -m bottomup.infer`` take the object; ``bottomup.build`` registers its flat form (grouping keys beside the
others, as ``conf/test/default.yaml`` writes them) as the Hydra schema of the ``test`` group.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bottomup.codec.settings import GROUPING_KEYS, GroupingSettings
from bottomup.core.precision import check_precision

__all__ = ["MAX_INPUT_SIDE", "MIN_INPUT_SIDE", "TEST_KEYS", "TestSettings", "check_scales"]

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
            dtype with ``fold_bn``).
        channels_last: NHWC memory format for the network (faster with oneDNN and on GPUs).
        fold_bn: run a copy with BatchNorm folded into the convolutions and the weights in ``precision``.
        compile: ``torch.compile`` that copy (implies it; the first image compiles).
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
    grouping: GroupingSettings = field(default_factory=GroupingSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "scales", check_scales(self.scales, self.input_size))
        check_precision(str(self.precision), "test.precision")
        for name in ("flip_test", "channels_last", "fold_bn", "compile"):
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

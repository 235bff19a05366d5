"""Grouping settings: the one home of the decode's keys, their defaults, checks and meaning.

:class:`GroupingSettings` holds the official HigherHRNet ``TEST`` keys of the decode
(``bottomup.codec.grouping.group_keypoints``). Every function that groups takes the object; the config group
``conf/test`` is validated against it at compose time (``bottomup.build`` registers the schema), the exported JSON
stores it as a dict (``grouping``), and ``GROUPING_KEYS`` is derived from its fields.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bottomup.codec.assignment import ASSIGNMENTS

__all__ = ["GroupingSettings", "GROUPING_KEYS"]


@dataclass(frozen=True)
class GroupingSettings:
    """How heatmaps and tag maps are grouped into people (official ``HeatmapParser``; ``conf/test/default.yaml``).

    Attributes:
        nms_kernel: max-pool window of the heatmap NMS, pixels of the maps (odd; official ``NMS_KERNEL``).
        max_people: candidates per joint and people per image, M (official ``MAX_NUM_PEOPLE``; ``test.max_people``).
        detection_threshold: heatmap value a candidate must exceed to be grouped, in ``[0, 1]``
            (official ``DETECTION_THRESHOLD``).
        tag_threshold: tag distance below which a candidate joins a person, tag units (official ``TAG_THRESHOLD``).
        use_detection_val: matching cost ``round(distance) * 100 - value`` (official ``USE_DETECTION_VAL``); else
            the distance alone.
        ignore_too_much: skip a joint's candidates once ``max_people`` people exist (official ``IGNORE_TOO_MUCH``).
        adjust: quarter-pixel shift towards the higher neighbour (official ``ADJUST``).
        refine: fill missing joints at the best heatmap-minus-tag-distance pixel (official ``REFINE``).
        assignment: the matching solver, ``"munkres"`` (the official solver's choice among equal-cost optima) or
            ``"scipy"`` (``bottomup.codec.assignment``).

    Raises:
        ValueError: a value out of its range (the message names the ``test.*`` key).
    """

    nms_kernel: int = 5
    max_people: int = 30
    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    use_detection_val: bool = True
    ignore_too_much: bool = False
    adjust: bool = True
    refine: bool = True
    assignment: str = "munkres"

    def __post_init__(self) -> None:
        for name, kind in (("nms_kernel", int), ("max_people", int), ("detection_threshold", float),
                           ("tag_threshold", float)):  # fmt: skip
            object.__setattr__(self, name, kind(getattr(self, name)))
        for name in ("use_detection_val", "ignore_too_much", "adjust", "refine"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        if self.max_people < 1:
            raise ValueError(f"max_people must be >= 1 (data.max_people / test.max_people), got {self.max_people}")
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ValueError(f"nms_kernel must be an odd number >= 1 (test.nms_kernel), got {self.nms_kernel}")
        if not 0.0 <= self.detection_threshold <= 1.0:  # NaN fails too
            raise ValueError(
                f"detection_threshold must be in [0, 1] (test.detection_threshold / --detection-threshold), got "
                f"{self.detection_threshold}"
            )
        if not 0.0 < self.tag_threshold < math.inf:
            raise ValueError(
                f"tag_threshold must be positive and finite (test.tag_threshold / --tag-threshold), got "
                f"{self.tag_threshold}"
            )
        if self.assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment must be one of {ASSIGNMENTS} (test.assignment), got {self.assignment!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, strict: bool = False) -> GroupingSettings:
        """The settings from a mapping holding (some of) :data:`GROUPING_KEYS`; other keys are ignored unless
        ``strict``.

        Raises:
            ValueError: with ``strict``, a key that is not a grouping setting (the message lists the allowed ones);
                a value out of its range.
        """
        if strict:
            unknown = set(values) - set(GROUPING_KEYS)
            if unknown:
                raise ValueError(f"unknown grouping settings {sorted(unknown)}; allowed: {list(GROUPING_KEYS)}")
        return cls(**{k: values[k] for k in GROUPING_KEYS if k in values})

    def replace(self, **changes: Any) -> GroupingSettings:
        """A copy with ``changes`` (grouping keys only), checked again.

        Raises:
            ValueError: an unknown key (the message lists the allowed ones) or a value out of its range.
        """
        if not changes:
            return self
        return dataclasses.replace(self, **GroupingSettings.from_mapping(changes, strict=True).pick(changes))

    def pick(self, keys: Any) -> dict[str, Any]:
        """``{key: value}`` of these settings for ``keys`` (an iterable of grouping keys)."""
        return {k: getattr(self, k) for k in keys}

    def as_dict(self) -> dict[str, Any]:
        """``{key: value}`` for every grouping key, in :data:`GROUPING_KEYS` order (the export JSON's ``grouping``)."""
        return dataclasses.asdict(self)


#: The grouping keys (official ``TEST`` names, ``conf/test/default.yaml``), in declaration order.
GROUPING_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GroupingSettings))

"""Training targets of one augmented image: the codec's heatmaps and tag indices, with the scale-aware sigma.

Reference: official HigherHRNet ``HeatmapGenerator`` / ``ScaleAwareHeatmapGenerator`` / ``JointsGenerator`` and
``CocoKeypoints.get_joints`` (per-person sigma); with ``data.udp`` MMPose 0.x ``HeatmapGenerator(use_udp=True)``.
Settings: :class:`bottomup.data.settings.TargetSettings`.

Letters: N people, K keypoints, M = ``max_people``, S input side, s output stride.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bottomup.codec import AssociativeEmbeddingCodec
from bottomup.data.settings import TargetSettings, check_strides

__all__ = ["TargetEncoder"]


class TargetEncoder:
    """Encodes the people of an augmented image into training targets (``AssociativeEmbeddingCodec.encode``).

    Args:
        settings: input size, sigma, max people, joint rounding, scale-aware sigma, UDP (``data.*``).
        num_keypoints: K.
        output_strides: one stride per output resolution (``model.strides``), e.g. ``(4, 2)``.
        flip_index: K ints for the codec (``bottomup.data.keypoints.flip_index_from_pairs``), or ``None``.

    Raises:
        ValueError: ``settings.input_size`` not a positive multiple of every stride, or no stride.
    """

    def __init__(
        self,
        settings: TargetSettings,
        num_keypoints: int,
        output_strides: Sequence[int],
        flip_index: Sequence[int] | None = None,
    ) -> None:
        self.settings = settings
        self.output_strides = check_strides(settings.input_size, output_strides)
        #: encodes the targets (heatmaps per stride, tag indices); owns sigma, strides and max_people
        self.codec = AssociativeEmbeddingCodec(
            num_keypoints,
            flip_index=flip_index,
            sigma=settings.sigma,
            strides=self.output_strides,
            max_people=settings.max_people,
            joint_rounding=settings.joint_rounding,
            udp=settings.udp,
        )

    @property
    def input_size(self) -> int:
        """S."""
        return self.settings.input_size

    @property
    def output_sizes(self) -> tuple[int, ...]:
        """Heatmap side ``S / s`` per stride."""
        return tuple(self.input_size // s for s in self.output_strides)

    def person_sigmas(self, box_sizes: np.ndarray) -> np.ndarray:
        """Scale-aware sigma at augmentation scale 1 (official ``CocoKeypoints.get_joints``).

        Args:
            box_sizes: ``(N,)`` ``max(bbox w, bbox h)`` in original px.

        Returns:
            ``(N,)`` float64 heatmap px: ``size / base_size * base_sigma``, or ``int(round(that + 0.5))`` with
            ``int_sigma``. People without a box (only those with no labeled joint, which paint nothing) get
            ``base_sigma``.
        """
        s = self.settings
        sizes = np.asarray(box_sizes, np.float64)
        sigmas = sizes / s.base_size * s.base_sigma
        if s.int_sigma:
            sigmas = np.array([float(int(np.round(v + 0.5))) for v in sigmas], np.float64)
        return np.where(sigmas > 0, sigmas, s.base_sigma)

    def encode(
        self, keypoints: np.ndarray, box_sizes: np.ndarray, scale: float = 1.0
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Targets of one image.

        Args:
            keypoints: ``(N, K, 3)`` ``(x, y, visibility)`` in input px (N <= M: select first).
            box_sizes: ``(N,)`` ``max(bbox w, bbox h)`` in original px (used with ``scale_aware_sigma`` only).
            scale: the augmentation's scale factor (``AugmentParams.scale``); the scale-aware sigma is divided by it.

        Returns:
            ``heatmaps``, one ``(K, S/s, S/s)`` float32 in [0, 1] per stride, and ``tag_indices`` ``(M, K, 2)``
            int64 at the first stride (``bottomup.codec.targets.tag_indices``).
        """
        sigmas = self.person_sigmas(box_sizes) / scale if self.settings.scale_aware_sigma else None
        targets = self.codec.encode(keypoints, self.input_size, sigmas=sigmas)
        return targets["heatmaps"], targets["tag_indices"]

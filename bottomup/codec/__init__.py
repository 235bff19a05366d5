"""Associative-embedding codec: keypoints <-> network outputs (MMPose ``codecs`` style).

:class:`AssociativeEmbeddingCodec` owns every setting both directions share: the layout (K, joint order, flip
index), the heatmap ``sigma``, the output ``strides``, ``max_people`` and the grouping thresholds. ``encode``
builds training targets (:mod:`bottomup.codec.targets`; the data set calls it), ``decode`` groups network outputs
(:mod:`bottomup.codec.grouping`; the test-time pipeline calls it), and ``ideal_outputs`` builds the outputs a
perfect network would give (:mod:`bottomup.codec.ideal`), so that the round trip ground truth -> ideal maps ->
decode -> the same people can be tested (``tests/test_roundtrip.py``). :mod:`bottomup.codec.reference` is a
straightforward loop implementation of the decode that the fast one is checked against.

Frames: ``encode`` / ``ideal_outputs`` take keypoints in *input* pixels; an output of stride ``s`` sees them at
``x / s`` (heatmap pixels), or with ``udp`` (unbiased data processing, Huang et al. CVPR 2020; MMPose 0.x
``use_udp``) at ``x * (w_out - 1) / (w_in - 1)``, Gaussians centred on the continuous position
(:mod:`bottomup.codec.targets`). ``decode`` returns keypoints in pixels of the maps it is given (pixel centres at
``+0.5``; with ``udp`` at the integers, :func:`bottomup.codec.grouping.group_keypoints`).

Letters: N people, K keypoints, M = ``max_people``, L tag dimensions, H x W map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bottomup.codec.grouping import group_keypoints
from bottomup.codec.settings import GROUPING_KEYS, GroupingSettings
from bottomup.codec.targets import ROUNDINGS, _check_sigmas, _render, _tags, joint_pixels, select_people

if TYPE_CHECKING:
    import torch

    from bottomup.core.keypoints import KeypointLayout

__all__ = ["AssociativeEmbeddingCodec", "GROUPING_KEYS", "GroupingSettings", "ideal_outputs", "flip_outputs"]


def __getattr__(name: str) -> Any:
    # ideal_outputs / flip_outputs build torch tensors: loaded on first use, so that the decode (numpy / scipy)
    # imports without torch (the torch-free runtime, ``bottomup.deploy.runtime``).
    if name in ("ideal_outputs", "flip_outputs"):
        from bottomup.codec import ideal

        return getattr(ideal, name)
    raise AttributeError(f"module 'bottomup.codec' has no attribute {name!r}")


def _hw(input_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        return input_size, input_size
    h, w = input_size
    return int(h), int(w)


def _permutation(name: str, value: Sequence[int] | None, k: int) -> list[int] | None:
    if value is None:
        return None
    out = [int(j) for j in value]
    if sorted(out) != list(range(k)):
        raise ValueError(f"{name} must be a permutation of range({k}), got {list(value)}")
    return out


class AssociativeEmbeddingCodec:
    """Encode / decode keypoints for associative embedding with one set of settings.

    Args:
        num_keypoints: K.
        joint_order: matching order (``KeypointLayout.joint_order_index``); default channel order.
        flip_index: joint permutation under a horizontal flip (``KeypointLayout.flip_index``); needed for flip
            test and ``flip_ideal``; ``None`` = no flip pairs known.
        sigma: heatmap Gaussian std in heatmap pixels (``data.sigma``); ``encode`` may give one per person instead
            (scale-aware sigma).
        joint_rounding: heatmap pixel of a joint, ``"trunc"`` (official ``int()``: a joint at ``-1 < x < 0`` lands on
            pixel 0 and is kept) or ``"floor"`` (``data.joint_rounding``; ``bottomup.codec.targets.joint_pixels``).
        strides: output strides, highest first (``model.strides``).
        grouping: the decode settings (:class:`GroupingSettings`); ``max_people`` is also M, the tag rows per
            training image (``data.max_people``). Default ``GroupingSettings()``.
        udp: UDP targets (``data.udp``): ``encode`` and ``ideal_outputs`` use the UDP frames and Gaussians, and
            ``decode`` its UDP adjust / refine unless told otherwise (the test pipeline passes ``test.udp``).
        **changes: grouping keys replacing those of ``grouping`` (``detection_threshold=0.2``, ...).

    Raises:
        ValueError: ``joint_order`` / ``flip_index`` that are not permutations of ``range(K)``, no strides, an
            unknown grouping key, or a setting out of its range (the message names the config key).
    """

    def __init__(
        self,
        num_keypoints: int,
        *,
        joint_order: Sequence[int] | None = None,
        flip_index: Sequence[int] | None = None,
        sigma: float = 2.0,
        strides: Sequence[int] = (4, 2),
        joint_rounding: str = "trunc",
        grouping: GroupingSettings | None = None,
        udp: bool = False,
        **changes: Any,
    ) -> None:
        k = int(num_keypoints)
        self.udp = bool(udp)
        self.num_keypoints = k
        self.joint_order = _permutation("joint_order", joint_order, k) or list(range(k))
        self.flip_index = _permutation("flip_index", flip_index, k)
        self.sigma = float(sigma)
        self.strides = tuple(int(s) for s in strides)
        if not self.strides:
            raise ValueError("strides must name at least one output stride")
        if self.sigma <= 0 or not self.sigma < float("inf"):
            raise ValueError(f"sigma must be positive and finite (data.sigma), got {sigma}")
        if joint_rounding not in ROUNDINGS:
            raise ValueError(f"joint_rounding must be one of {ROUNDINGS} (data.joint_rounding), got {joint_rounding!r}")
        self.joint_rounding = joint_rounding
        #: the decode settings (one object: ``group_keypoints`` reads it as it is)
        self.grouping_settings = (GroupingSettings() if grouping is None else grouping).replace(**changes)

    @classmethod
    def from_layout(cls, layout: KeypointLayout, **kwargs: Any) -> AssociativeEmbeddingCodec:
        """A codec for ``layout`` (K, ``joint_order_index``, ``flip_index``); ``kwargs`` are the other settings."""
        return cls(layout.num_keypoints, joint_order=layout.joint_order_index, flip_index=layout.flip_index, **kwargs)

    @property
    def grouping(self) -> dict[str, Any]:
        """The decode settings as a dict (:meth:`GroupingSettings.as_dict`, :data:`GROUPING_KEYS` order)."""
        return self.grouping_settings.as_dict()

    @property
    def max_people(self) -> int:
        """M: people per decoded image and tag rows per training image (``grouping_settings.max_people``)."""
        return self.grouping_settings.max_people

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.grouping.items())
        udp = ", udp=True" if self.udp else ""
        return (
            f"{type(self).__name__}(num_keypoints={self.num_keypoints}, sigma={self.sigma}, strides={self.strides}"
            f"{udp}, {settings})"
        )

    def encode(
        self, keypoints: np.ndarray, input_size: int | Sequence[int], sigmas: np.ndarray | None = None
    ) -> dict[str, Any]:
        """Training targets for one image.

        Coordinates are divided by each stride in float64 (exact for power-of-two strides: the same as warping with
        the heatmap-frame affine), then rendered (``render_heatmaps``, Gaussians of ``sigma``) and indexed
        (``tag_indices`` at the first stride, the ``max_people`` most complete people), both with
        ``joint_rounding``. With ``udp`` they are multiplied by ``(w_out - 1) / (w_in - 1)`` (and ``h`` alike) and
        the Gaussians centred on them (MMPose 0.x ``BottomUpRandomAffine`` + ``HeatmapGenerator`` with
        ``use_udp=True``: each output's own ``size - 1`` matrix).

        Args:
            keypoints: ``(N, K, 3)`` ``(x, y, visibility)`` in input pixels.
            input_size: side or ``(height, width)`` of the network input, a multiple of every stride.
            sigmas: ``(N,)`` per-person Gaussian std in heatmap pixels, the same at every stride (official
                ``ScaleAwareHeatmapGenerator``); ``None``: the codec's ``sigma``.

        Returns:
            ``{"heatmaps": [(K, H/s, W/s) float32 per stride], "tag_indices": (M, K, 2) int64}`` (tag indices
            into the first output's flattened ``(K, H/s0, W/s0)`` tag maps).

        Raises:
            ValueError: ``keypoints`` not ``(N, K, 3)`` with this codec's K, or ``sigmas`` not ``(N,)`` positive.
        """
        h_in, w_in = _hw(input_size)
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if keypoints.ndim != 3 or keypoints.shape[1] != self.num_keypoints or keypoints.shape[2] < 3:
            raise ValueError(f"keypoints must be (N, {self.num_keypoints}, 3), got shape {keypoints.shape}")
        sigma = _check_sigmas(self.sigma if sigmas is None else sigmas, keypoints.shape[0])
        selected = select_people(keypoints, self.max_people)  # the people with tag rows
        heatmaps, tags = [], None
        for s in self.strides:
            h, w = h_in // s, w_in // s
            kp = self.to_output(keypoints, (h_in, w_in), s)
            pixels = joint_pixels(kp, h, w, self.joint_rounding)  # one rule for the heatmaps and the tags
            heatmaps.append(_render(kp, h, w, sigma, pixels, self.udp))
            if tags is None:
                tags = _tags(tuple(p[selected] for p in pixels), h, w, self.max_people)
        return {"heatmaps": heatmaps, "tag_indices": tags}

    def to_output(self, keypoints: np.ndarray, input_hw: tuple[int, int], stride: int) -> np.ndarray:
        """``(N, K, C)`` float64 copy of input-pixel keypoints in pixels of the output of ``stride``: ``x / stride``,
        or with ``udp`` ``x * (w_out - 1) / (w_in - 1)``, ``y`` likewise (other columns unchanged).

        Raises:
            ValueError: with ``udp``, a side < 2 (``bottomup.data`` frames have none).
        """
        h_in, w_in = input_hw
        kp = np.array(keypoints, dtype=np.float64, copy=True)
        if self.udp:
            h_out, w_out = h_in // stride, w_in // stride
            if min(h_in, w_in, h_out, w_out) < 2:
                raise ValueError(f"UDP frames need sides >= 2, got input {input_hw} at stride {stride}")
            kp[..., 0] *= (w_out - 1.0) / (w_in - 1.0)
            kp[..., 1] *= (h_out - 1.0) / (h_in - 1.0)
        else:
            kp[..., :2] /= stride
        return kp

    def decode(
        self, heatmaps: np.ndarray | torch.Tensor, tags: np.ndarray | torch.Tensor, *, udp: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Group one image's maps (``bottomup.codec.grouping.group_keypoints`` with this codec's settings).

        Args:
            heatmaps: ``(K, H, W)`` numpy array or tensor (CPU or GPU).
            tags: ``(K, H, W, L)``.
            udp: the UDP adjust / refine (MMPose 0.x ``HeatmapParser`` with ``use_udp``); ``None``: the codec's
                ``udp``.

        Returns:
            ``keypoints (N, K, 3 + L)`` float32 in pixels of the given maps (x, y, score, tag), ``scores (N,)``.
        """
        return group_keypoints(
            heatmaps,
            tags,
            joint_order=self.joint_order,
            settings=self.grouping_settings,
            udp=self.udp if udp is None else bool(udp),
        )

    def ideal_outputs(
        self, keypoints: np.ndarray, input_hw: tuple[int, int], tags_per_person: Sequence[float] | None = None
    ) -> list[torch.Tensor]:
        """``ideal_outputs`` with this codec's strides, sigma and ``udp``."""
        from bottomup.codec.ideal import ideal_outputs

        return ideal_outputs(keypoints, input_hw, self.strides, tags_per_person, self.sigma, udp=self.udp)

    def flip_ideal(self, outputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``flip_outputs`` with this codec's ``flip_index``.

        Raises:
            ValueError: the codec has no ``flip_index``.
        """
        if self.flip_index is None:
            raise ValueError("AssociativeEmbeddingCodec has no flip_index")
        from bottomup.codec.ideal import flip_outputs

        return flip_outputs(outputs, self.flip_index, self.num_keypoints)

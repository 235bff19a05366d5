"""Associative-embedding codec: keypoints <-> network outputs (MMPose ``codecs`` style).

``encode`` builds training targets (``bottomup.targets``), ``decode`` groups network outputs
(``bottomup.grouping``), and ``ideal_outputs`` builds the outputs a perfect network would give, used to test
the decode path end to end (``tests/test_roundtrip.py``).

Frames: ``encode`` / ``ideal_outputs`` take keypoints in *input* pixels; an output of stride ``s`` sees them at
``x / s`` (heatmap pixels). ``decode`` returns keypoints in pixels of the maps it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bottomup.grouping import group_keypoints
from bottomup.targets import render_heatmaps, tag_indices

__all__ = ["AssociativeEmbeddingCodec", "ideal_outputs", "flip_outputs"]


def _hw(input_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        return input_size, input_size
    h, w = input_size
    return int(h), int(w)


def ideal_outputs(
    keypoints: np.ndarray,
    input_hw: tuple[int, int],
    strides: Sequence[int] = (4, 2),
    tags_per_person: Sequence[float] | None = None,
    sigma: float = 2.0,
    fill_tag: float = 0.0,
) -> list[torch.Tensor]:
    """Perfect network outputs for people at known positions.

    Heatmaps are the training targets (``render_heatmaps``, Gaussian of ``sigma`` at every stride); tag maps
    (first output only, ``tag_dim = 1``) hold, in channel ``k``, the tag of the person whose joint ``k`` is
    nearest to the pixel (``fill_tag`` where no person has joint ``k``).

    Args:
        keypoints: ``(N, K, 3)`` ``(x, y, visibility)`` in input pixels; visibility 0 = absent.
        input_hw: ``(height, width)`` of the network input (multiples of the strides).
        strides: output strides, highest first (``(4, 2)`` HigherHRNet, ``(4,)`` HRNet).
        tags_per_person: ``(N,)`` tag of each person (default ``2 * n``, spacing 2 > tag threshold).
        sigma: heatmap Gaussian std, heatmap pixels.

    Returns:
        ``[(1, 2K, H/s0, W/s0), (1, K, H/s1, W/s1), ...]`` float32 tensors, as ``HigherHRNet.forward``.
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.ndim != 3 or keypoints.shape[-1] < 3:
        raise ValueError(f"keypoints must be (N, K, 3), got {keypoints.shape}")
    n, k = keypoints.shape[:2]
    tags = np.arange(n, dtype=np.float32) * 2.0 if tags_per_person is None else np.asarray(tags_per_person)
    if tags.shape != (n,):
        raise ValueError(f"tags_per_person must have one value per person ({n}), got shape {tags.shape}")
    h_in, w_in = input_hw
    outputs = []
    for i, s in enumerate(strides):
        h, w = h_in // s, w_in // s
        kp = keypoints.copy()
        kp[..., :2] /= s
        maps = [render_heatmaps(kp, h, w, sigma)]
        if i == 0:
            tag_maps = np.full((k, h, w), fill_tag, np.float32)
            x, y = kp[..., 0], kp[..., 1]
            ok = (kp[..., 2] > 0) & (x >= 0) & (y >= 0) & (x < w) & (y < h)
            xi, yi = np.where(ok, x, 0).astype(np.int64), np.where(ok, y, 0).astype(np.int64)
            ys, xs = np.mgrid[0:h, 0:w]
            for j in range(k):
                people = np.nonzero(ok[:, j])[0]
                if people.size == 0:
                    continue
                d2 = (xs[None] - xi[people, j, None, None]) ** 2 + (ys[None] - yi[people, j, None, None]) ** 2
                tag_maps[j] = tags[people][np.argmin(d2, axis=0)]
            maps.append(tag_maps)
        outputs.append(torch.from_numpy(np.concatenate(maps, axis=0))[None])
    return outputs


def flip_outputs(outputs: Sequence[torch.Tensor], flip_index: Sequence[int], num_keypoints: int) -> list[torch.Tensor]:
    """Outputs of a perfectly flip-equivariant network on the mirrored image: mirror the maps and swap the
    left / right channels (heatmaps and tags alike)."""
    index = list(flip_index)
    result = []
    for o in outputs:
        groups = o.shape[1] // num_keypoints
        perm = [g * num_keypoints + j for g in range(groups) for j in index]
        result.append(torch.flip(o, [3])[:, perm])
    return result


class AssociativeEmbeddingCodec:
    """Encode / decode keypoints for associative embedding with shared settings.

    Args:
        num_keypoints: K.
        joint_order: matching order (``KeypointLayout.joint_order_index``); default channel order.
        flip_index: ``KeypointLayout.flip_index`` (used by ``flip_ideal``).
        sigma: heatmap Gaussian std in heatmap pixels.
        strides: output strides, highest first.
        max_people: M.
        grouping: other ``group_keypoints`` keyword arguments (``nms_kernel``, ``detection_threshold``,
            ``tag_threshold``, ``use_detection_val``, ``ignore_too_much``, ``adjust``, ``refine``).
    """

    def __init__(
        self,
        num_keypoints: int,
        *,
        joint_order: Sequence[int] | None = None,
        flip_index: Sequence[int] | None = None,
        sigma: float = 2.0,
        strides: Sequence[int] = (4, 2),
        max_people: int = 30,
        **grouping: Any,
    ) -> None:
        self.num_keypoints = int(num_keypoints)
        self.joint_order = list(range(num_keypoints)) if joint_order is None else [int(j) for j in joint_order]
        self.flip_index = None if flip_index is None else [int(j) for j in flip_index]
        self.sigma = float(sigma)
        self.strides = tuple(int(s) for s in strides)
        self.max_people = int(max_people)
        self.grouping = dict(grouping)

    def encode(self, keypoints: np.ndarray, input_size: int | Sequence[int]) -> dict[str, Any]:
        """Training targets for one image.

        Args:
            keypoints: ``(N, K, 3)`` ``(x, y, visibility)`` in input pixels.
            input_size: side or ``(height, width)`` of the network input.

        Returns:
            ``{"heatmaps": [(K, H/s, W/s) float32 per stride], "tag_indices": (M, K, 2) int64}`` (tag indices
            into the first output's flattened ``(K, H/s0, W/s0)`` tag maps).
        """
        h_in, w_in = _hw(input_size)
        keypoints = np.asarray(keypoints, dtype=np.float32)
        heatmaps = []
        for s in self.strides:
            kp = keypoints.copy()
            kp[..., :2] /= s
            heatmaps.append(render_heatmaps(kp, h_in // s, w_in // s, self.sigma))
        s0 = self.strides[0]
        kp = keypoints.copy()
        kp[..., :2] /= s0
        return {"heatmaps": heatmaps, "tag_indices": tag_indices(kp, h_in // s0, w_in // s0, self.max_people)}

    def decode(self, heatmaps, tags) -> tuple[np.ndarray, np.ndarray]:
        """Group one image's maps: ``heatmaps (K, H, W)``, ``tags (K, H, W, L)`` -> ``(keypoints (N, K, 3 + L)``
        in map pixels, ``scores (N,))`` (see ``bottomup.grouping.group_keypoints``)."""
        return group_keypoints(
            heatmaps, tags, joint_order=self.joint_order, max_people=self.max_people, **self.grouping
        )

    def ideal_outputs(
        self, keypoints: np.ndarray, input_hw: tuple[int, int], tags_per_person: Sequence[float] | None = None
    ) -> list[torch.Tensor]:
        """``ideal_outputs`` with this codec's strides and sigma."""
        return ideal_outputs(keypoints, input_hw, self.strides, tags_per_person, self.sigma)

    def flip_ideal(self, outputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``flip_outputs`` with this codec's ``flip_index``."""
        if self.flip_index is None:
            raise ValueError("AssociativeEmbeddingCodec has no flip_index")
        return flip_outputs(outputs, self.flip_index, self.num_keypoints)

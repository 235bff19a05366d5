"""Ideal network outputs: what a perfect HigherHRNet would predict for people at known positions.

Used to test the decode path end to end (``tests/test_roundtrip.py``) and to benchmark grouping
(``python -m bottomup.bench --only grouping``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bottomup.codec.targets import joint_pixels, render_heatmaps

__all__ = ["ideal_outputs", "flip_outputs"]


def ideal_outputs(
    keypoints: np.ndarray,
    input_hw: tuple[int, int],
    strides: Sequence[int] = (4, 2),
    tags_per_person: Sequence[float] | None = None,
    sigma: float = 2.0,
    fill_tag: float = 0.0,
    udp: bool = False,
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
        udp: UDP outputs (a network trained with ``data.udp``): output coordinates ``x * (w_out - 1) / (w_in - 1)``
            and Gaussians centred on them (``render_heatmaps(udp=True)``); the tag maps use the same joint pixels.

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
        kp = keypoints.astype(np.float64)
        if udp:
            kp[..., 0] *= (w - 1.0) / (w_in - 1.0)
            kp[..., 1] *= (h - 1.0) / (h_in - 1.0)
        else:
            kp = keypoints.copy()
            kp[..., :2] /= s
        maps = [render_heatmaps(kp, h, w, sigma, udp=udp)]
        if i == 0:
            tag_maps = np.full((k, h, w), fill_tag, np.float32)
            xi, yi, ok = joint_pixels(kp, h, w)  # the heatmaps' joint pixels (official int() truncation)
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

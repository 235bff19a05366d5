"""Geometric augmentation as pure functions: one affine matrix per sample, shared by image, masks, keypoints.

Frames
    *original* pixels (COCO annotation frame) --``matrix``--> *input* pixels (the ``S x S`` network input)
    --``/ stride``--> *heatmap* pixels of one output. Coordinates are continuous with OpenCV's convention:
    pixel ``(i, j)`` covers ``[j - 0.5, j + 0.5) x [i - 0.5, i + 0.5)`` and its centre is the integer ``(j, i)``.
    ``cv2.warpAffine(image, matrix, (S, S))`` and ``warp_keypoints(keypoints, matrix)`` are therefore consistent.

Crop semantics (official HigherHRNet ``RandomAffineTransform``, ``SCALE_TYPE: short``)
    A square of side ``scale_px`` original pixels centred at ``center`` is mapped onto the whole output; in
    the dataset ``scale_px = min(H, W) * aug_scale`` with ``aug_scale`` uniform in ``[min_scale, max_scale]``
    (> 1 zooms out, < 1 zooms in) and ``center = (W / 2, H / 2) + (dx, dy)`` with ``dx, dy`` uniform in
    ``+-max_translate * scale_px / 200`` original pixels (i.e. ``max_translate`` px at the 200-px reference
    scale). The rotation is about the output centre; positive angles turn the content counter-clockwise
    (OpenCV ``getRotationMatrix2D`` direction).

Horizontal flip convention
    ``x -> W - 1 - x`` (pixel centres map to pixel centres), exactly what ``image[:, ::-1]`` does to the pixel
    grid, applied in the *input* frame. It is an involution. A flip folded into ``affine_matrix`` equals
    ``flip_image`` / ``flip_keypoints`` applied after the warp. In a heatmap frame of stride ``s`` the same
    flip reads ``x_h -> (S - 1) / s - x_h`` (the official code uses ``S / s - 1 - x_h`` there, which
    disagrees with its own image flip by ``(s - 1) / (2 s)`` heatmap px; here every frame agrees).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "affine_matrix",
    "flip_matrix",
    "scale_matrix",
    "warp_keypoints",
    "flip_image",
    "flip_keypoints",
]


def _h(matrix: np.ndarray) -> np.ndarray:
    """2x3 -> 3x3 homogeneous."""
    out = np.eye(3)
    out[:2] = matrix
    return out


def flip_matrix(width: int) -> np.ndarray:
    """``(2, 3)`` float64 affine of the horizontal flip ``x -> width - 1 - x`` in a frame ``width`` px wide."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def affine_matrix(
    center: Sequence[float],
    scale_px: float,
    rotation_deg: float,
    output_size: int,
    flip: bool = False,
) -> np.ndarray:
    """The original -> output affine of one augmentation (crop, rescale, rotate, optional flip).

    Args:
        center: ``(x, y)`` in original pixels; lands at ``(output_size / 2, output_size / 2)``.
        scale_px: side, in original pixels, of the square mapped onto the ``output_size`` square (> 0).
        rotation_deg: rotation about the output centre, degrees, positive = counter-clockwise on screen.
        output_size: output side S in pixels (input frame: the network input size).
        flip: append the horizontal flip ``x -> S - 1 - x`` of the output frame.

    Returns:
        ``(2, 3)`` float64 matrix for ``cv2.warpAffine(src, m, (S, S))`` and ``warp_keypoints``.

    Raises:
        ValueError: ``scale_px <= 0`` or ``output_size <= 0``.
    """
    if not scale_px > 0 or output_size <= 0:
        raise ValueError(f"scale_px and output_size must be positive, got {scale_px}, {output_size}")
    s = output_size / float(scale_px)
    half = output_size / 2.0
    crop = np.array([[s, 0.0, half - s * center[0]], [0.0, s, half - s * center[1]]])
    m = _h(crop)
    if rotation_deg:
        a = np.deg2rad(rotation_deg)
        c, sn = np.cos(a), np.sin(a)
        # rotate about (half, half); y points down, so [[c, s], [-s, c]] turns content counter-clockwise
        rot = np.array([[c, sn, half - c * half - sn * half], [-sn, c, half + sn * half - c * half]])
        m = _h(rot) @ m
    if flip:
        m = _h(flip_matrix(output_size)) @ m
    return m[:2].copy()


def scale_matrix(matrix: np.ndarray, stride: float) -> np.ndarray:
    """Input-frame matrix -> heatmap-frame matrix of an output with ``stride`` (``x_h = x_input / stride``)."""
    return np.asarray(matrix, dtype=np.float64) / float(stride)


def warp_keypoints(keypoints: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to the ``(x, y)`` of keypoints; other columns (visibility, score) are kept.

    Args:
        keypoints: ``(..., D)`` with ``D >= 2``, ``(x, y, ...)`` in the source frame.
        matrix: ``(2, 3)`` source -> destination (cv2 convention).

    Returns:
        float64 array of the same shape, ``(x, y)`` in the destination frame.
    """
    kp = np.array(keypoints, dtype=np.float64, copy=True)
    m = np.asarray(matrix, dtype=np.float64)
    xy = kp[..., :2]
    kp[..., :2] = xy @ m[:, :2].T + m[:, 2]
    return kp


def flip_image(image: np.ndarray) -> np.ndarray:
    """Mirror an ``(H, W)`` or ``(H, W, C)`` array left-right (``x -> W - 1 - x``); a contiguous copy."""
    return np.ascontiguousarray(image[:, ::-1])


def flip_keypoints(keypoints: np.ndarray, flip_index: Sequence[int], width: int) -> np.ndarray:
    """Mirror keypoints in a frame ``width`` px wide and swap left/right joints.

    Args:
        keypoints: ``(N, K, D)``, ``(x, y, ...)``; x in pixels of the frame.
        flip_index: K ints, ``bottomup.keypoints.flip_index_from_pairs``; output joint k comes from
            input joint ``flip_index[k]``.
        width: frame width W (the image flipped with ``flip_image``).

    Returns:
        float64 ``(N, K, D)``: ``x -> W - 1 - x``, joints permuted. Applying it twice is the identity.

    Raises:
        ValueError: ``len(flip_index) != K``.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape[-2] != len(flip_index):
        raise ValueError(f"flip_index has {len(flip_index)} entries for {kp.shape[-2]} keypoints")
    out = kp[..., list(flip_index), :].copy()
    out[..., 0] = (width - 1.0) - out[..., 0]
    return out

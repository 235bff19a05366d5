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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

#: Every network input side is a multiple of this (``bottomup.models.hrnet.INPUT_MULTIPLE``, the stride of the
#: lowest-resolution branch; ``tests/test_deploy.py`` checks they agree). Written here too so that the test-time
#: resize imports without torch (the torch-free runtime, ``bottomup.deploy.runtime``).
INPUT_MULTIPLE = 32

__all__ = [
    "ResizeTransform",
    "resize_transform",
    "check_image",
    "preprocess",
    "to_original",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "affine_matrix",
    "udp_affine_matrix",
    "udp_output_matrix",
    "udp_frame_scale",
    "flip_matrix",
    "scale_matrix",
    "warp_keypoints",
    "flip_image",
    "flip_keypoints",
]

#: ImageNet RGB mean and std on the 0-1 scale: the input normalisation of every network here (training and test
#: time), as the official HigherHRNet and the ImageNet-pretrained HRNet backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def udp_affine_matrix(
    center: Sequence[float],
    scale_px: float,
    rotation_deg: float,
    output_size: int,
    flip: bool = False,
) -> np.ndarray:
    """The original -> output affine of one augmentation under UDP (unbiased data processing, Huang et al. CVPR
    2020, Sec. 3-4; MMPose 0.x ``BottomUpRandomAffine(use_udp=True)`` / ``get_warp_matrix``).

    Sizes count the distances between pixel centres (``size - 1``): ``p_out = (S - 1) / scale_px * R (p - center) +
    (S - 1) / 2``, so ``center`` lands on the centre of the output's middle pixel, ``(S - 1) / 2``, and the
    matrix of an output ``S'`` px wide is this one times ``(S' - 1) / (S - 1)`` (:func:`udp_output_matrix`), where
    dividing by the stride (:func:`scale_matrix`) is the biased rule.

    Args:
        center: ``(x, y)`` in original pixels (MMPose: ``((W - 1) / 2, (H - 1) / 2)`` + the translation).
        scale_px: side, in original pixels, of the square mapped onto the output (MMPose ``size_target``; > 0).
        rotation_deg: degrees, positive = counter-clockwise on screen, as :func:`affine_matrix` (MMPose's
            ``get_warp_matrix(theta)`` turns the other way: this is its ``theta = -rotation_deg``).
        output_size: S, output side in pixels.
        flip: append the horizontal flip ``x -> S - 1 - x`` of the output frame.

    Returns:
        ``(2, 3)`` float64 matrix for ``cv2.warpAffine(src, m, (S, S))`` and ``warp_keypoints``.

    Raises:
        ValueError: ``scale_px <= 0`` or ``output_size < 2``.
    """
    if not scale_px > 0 or output_size < 2:
        raise ValueError(f"scale_px must be positive and output_size >= 2, got {scale_px}, {output_size}")
    s = (output_size - 1.0) / float(scale_px)
    half = (output_size - 1.0) / 2.0
    a = np.deg2rad(rotation_deg)
    c, sn = np.cos(a), np.sin(a)
    rot = np.array([[c, sn], [-sn, c]]) * s  # y points down: [[c, s], [-s, c]] turns content counter-clockwise
    cxy = np.asarray(center, np.float64)
    m = np.zeros((3, 3))
    m[:2, :2] = rot
    m[:2, 2] = half - rot @ cxy
    m[2, 2] = 1.0
    if flip:
        m = _h(flip_matrix(output_size)) @ m
    return m[:2].copy()


def udp_frame_scale(input_size: Sequence[int], output_size: Sequence[int]) -> np.ndarray:
    """``(2,)`` float64 factors ``((w_out - 1) / (w_in - 1), (h_out - 1) / (h_in - 1))`` taking UDP input-frame
    pixels to the pixels of an output ``(w_out, h_out)`` (corner pixel centres on corner pixel centres; MMPose 0.x
    UDP, Huang et al. 2020 Sec. 4). Sizes are ``(width, height)``.

    Raises:
        ValueError: a side < 2.
    """
    w_in, h_in = (int(v) for v in input_size)
    w_out, h_out = (int(v) for v in output_size)
    if min(w_in, h_in, w_out, h_out) < 2:
        raise ValueError(f"UDP frames need sides >= 2, got input {input_size}, output {output_size}")
    return np.array([(w_out - 1.0) / (w_in - 1.0), (h_out - 1.0) / (h_in - 1.0)])


def udp_output_matrix(matrix: np.ndarray, input_size: int, output_size: int) -> np.ndarray:
    """Input-frame matrix -> the matrix of a square output ``output_size`` px wide under UDP: times
    ``(output_size - 1) / (input_size - 1)`` (MMPose's per-output ``get_warp_matrix`` with ``size_dst = size - 1``)."""
    f = udp_frame_scale((input_size, input_size), (output_size, output_size))
    return np.asarray(matrix, dtype=np.float64) * f[:, None]


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
        flip_index: K ints, ``bottomup.data.keypoints.flip_index_from_pairs``; output joint k comes from
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


# ------------------------------------------------------------------------------------------ test-time resize
# Official HigherHRNet ``resize_align_multi_scale`` / ``get_final_preds``: the short side becomes
# ``input_size * scale``, the long side is rounded up to a multiple of 64, the image is centred.


@dataclass(frozen=True)
class ResizeTransform:
    """The test-time resize of one image at one scale.

    Attributes:
        size: ``(width, height)`` of the network input, multiples of 64 on the long side.
        center: ``(2,)`` centre of the original image (official rounding ``int(w / 2 + 0.5)``; UDP: MMPose's
            ``(scale_w / 2, scale_h / 2)``, unused by the warp).
        scale: ``(2,)`` source box size / 200 (official "scale" units); UDP: the source box in pixel-centre
            distances, ``(W - 1, (h - 1) / (w - 1) * (W - 1))`` for a portrait image (MMPose 0.x
            ``_get_multi_scale_size(use_udp=True)``), which :func:`to_original` maps back with.
        matrix: ``(2, 3)`` original-image px -> input px (cv2 convention).
        inverse: ``(2, 3)`` input px -> original-image px.
        udp: the UDP resize (:func:`resize_transform`); :func:`to_original` then maps from the decoded maps' frame.
    """

    size: tuple[int, int]
    center: np.ndarray
    scale: np.ndarray
    matrix: np.ndarray
    inverse: np.ndarray
    udp: bool = False


def _affine(center: np.ndarray, scale: np.ndarray, size: tuple[int, int], inverse: bool) -> np.ndarray:
    """Official ``get_affine_transform`` with rot = 0 and shift = 0 (three float32 point pairs, cv2)."""
    src_w = float(scale[0]) * 200.0
    dst_w, dst_h = size
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + np.array([0.0, -0.5 * src_w], np.float32)
    dst[0] = (dst_w * 0.5, dst_h * 0.5)
    dst[1] = (dst_w * 0.5, dst_h * 0.5 - 0.5 * dst_w)
    for pts in (src, dst):  # third point: the second one rotated by 90 degrees about the first
        d = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-d[1], d[0]], np.float32)
    if inverse:
        return cv2.getAffineTransform(dst, src)
    return cv2.getAffineTransform(src, dst)


def _round_to_multiple(side: int) -> int:
    """``side`` rounded to the nearest multiple of the network's ``INPUT_MULTIPLE`` (at least one)."""
    return max(INPUT_MULTIPLE, int(round(side / INPUT_MULTIPLE)) * INPUT_MULTIPLE)


def _resized_size(height: int, width: int, input_size: int, scale: float, min_scale: float) -> tuple[int, int]:
    """``(w_resized, h_resized)`` of :func:`resize_transform` (official ``get_multi_scale_size``, then rounded to
    multiples of ``INPUT_MULTIPLE``)."""
    h, w = height, width
    min_input = int((min_scale * input_size + 63) // 64 * 64)
    if w < h:
        w_resized = int(min_input * scale / min_scale)
        h_resized = int(int((min_input / w * h + 63) // 64 * 64) * scale / min_scale)
    else:
        h_resized = int(min_input * scale / min_scale)
        w_resized = int(int((min_input / h * w + 63) // 64 * 64) * scale / min_scale)
    return _round_to_multiple(w_resized), _round_to_multiple(h_resized)


def _udp_box(height: int, width: int, size: tuple[int, int]) -> np.ndarray:
    """MMPose 0.x ``_get_multi_scale_size(use_udp=True)``'s ``scale``: the source box in pixel-centre distances, the
    short side's ``side - 1`` and the long side's by the ratio of the resized ``size - 1``."""
    w_resized, h_resized = size
    if width < height:
        return np.array([width - 1.0, (h_resized - 1.0) / (w_resized - 1.0) * (width - 1.0)])
    return np.array([(w_resized - 1.0) / (h_resized - 1.0) * (height - 1.0), height - 1.0])


def _udp_resize(height: int, width: int, input_size: int, scale: float, min_scale: float) -> ResizeTransform:
    """:func:`resize_transform` with ``udp=True`` (MMPose 0.x ``_resize_align_multi_scale_udp``)."""
    if height < 2 or width < 2:
        raise ValueError(f"the UDP resize needs an image of at least 2 x 2 px, got {height}x{width}")
    size = _resized_size(height, width, input_size, scale, min_scale)
    box = _udp_box(height, width, size)
    # The warp scales by (size - 1) / box with the box of the smallest scale (MMPose), anchored at pixel (0, 0).
    box_min = _udp_box(height, width, _resized_size(height, width, input_size, min_scale, min_scale))
    f = (np.asarray(size, np.float64) - 1.0) / box_min
    matrix = np.array([[f[0], 0.0, 0.0], [0.0, f[1], 0.0]])
    inverse = np.array([[1.0 / f[0], 0.0, 0.0], [0.0, 1.0 / f[1], 0.0]])
    return ResizeTransform(size=size, center=box / 2.0, scale=box, matrix=matrix, inverse=inverse, udp=True)


def resize_transform(
    height: int, width: int, input_size: int, scale: float = 1.0, min_scale: float = 1.0, *, udp: bool = False
) -> ResizeTransform:
    """Input size and affine transform of an ``height x width`` image at one test scale.

    Official ``get_multi_scale_size``: with ``s_min = ceil64(min_scale * input_size)`` the short side becomes
    ``int(s_min * scale / min_scale)`` and the long side ``int(ceil64(s_min * long / short) * scale / min_scale)``.
    A side that this leaves off a multiple of the network's ``INPUT_MULTIPLE`` (32; scale 1.25 of 192 px: 240) is
    rounded to the nearest multiple, which the network can run (the official code stops there); the affine follows
    the rounded size. Official scales (2, 1, 0.5 of 512 or 640) give multiples already and are unchanged.

    With ``udp`` (unbiased data processing, Huang et al. CVPR 2020; MMPose 0.x ``BottomUpGetImgSize`` /
    ``BottomUpResizeAlign`` with ``use_udp=True``) the sizes are the same but the image is not centred: the warp is
    a scaling about pixel ``(0, 0)``, ``x_in = x * (w - 1) / box_w``, ``y_in = y * (h - 1) / box_h``, with MMPose's
    box at ``min_scale`` (``_udp_box``: ``(W - 1, (h - 1) / (w - 1) * (W - 1))`` for a portrait image, so at one
    scale ``x_in = x * (w - 1) / (W - 1)`` on both axes), and ``scale`` holds the box at this scale (for
    :func:`to_original`).

    Raises:
        ValueError: non-positive sizes or scales; with ``udp``, an image side < 2.
    """
    if height <= 0 or width <= 0 or input_size <= 0 or scale <= 0 or min_scale <= 0:
        raise ValueError(
            f"image size, input_size and scales must be positive, got {height}x{width}, "
            f"input_size={input_size}, scale={scale}, min_scale={min_scale}"
        )
    if udp:
        return _udp_resize(height, width, input_size, scale, min_scale)
    h, w = height, width
    center = np.array([int(w / 2.0 + 0.5), int(h / 2.0 + 0.5)])
    w_resized, h_resized = _resized_size(height, width, input_size, scale, min_scale)
    if w < h:
        scale_wh = np.array([w / 200.0, h_resized / w_resized * w / 200.0])
    else:
        scale_wh = np.array([w_resized / h_resized * h / 200.0, h / 200.0])
    size = (w_resized, h_resized)
    return ResizeTransform(
        size=size,
        center=center,
        scale=scale_wh,
        matrix=_affine(center, scale_wh, size, inverse=False),
        inverse=_affine(center, scale_wh, size, inverse=True),
    )


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` if it is an ``(H, W, 3)`` uint8 RGB numpy array.

    Raises:
        TypeError: not a numpy array. ValueError: another shape or dtype (the message gives the value range and how
            to convert: a 0-1 float image is scaled by 255 first, which ``.astype(np.uint8)`` alone would not do).
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must have shape (H, W, 3) (RGB), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB (0-255), got dtype {image.dtype}{_conversion_advice(image)}")
    return image


def _conversion_advice(image: np.ndarray) -> str:
    """The value range of a non-uint8 image and how to convert it to uint8 0-255."""
    if image.dtype == np.bool_ or not np.issubdtype(image.dtype, np.number):
        return "; convert it to uint8 RGB 0-255"
    low, high = float(np.nanmin(image)), float(np.nanmax(image))
    seen = f" (values {low:g} to {high:g})"
    if np.issubdtype(image.dtype, np.floating):
        looks = "0-1" if high <= 1.0 else "0-255"
        return (
            f"{seen}; a 0-1 float image (this one looks {looks}) converts with (img * 255).round().astype(np.uint8), "
            "a 0-255 one with img.clip(0, 255).round().astype(np.uint8) (.astype(np.uint8) alone turns a 0-1 image "
            "black)"
        )
    if image.dtype == np.uint16 and high > 255:
        return f"{seen}; a 16-bit image converts with (img / 257).round().astype(np.uint8)"
    return f"{seen}; values 0-255 convert with img.clip(0, 255).astype(np.uint8)"


def preprocess(
    image: np.ndarray, input_size: int, scale: float = 1.0, min_scale: float = 1.0, *, udp: bool = False
) -> tuple[torch.Tensor, ResizeTransform]:
    """Resize (official ``resize_align_multi_scale``; MMPose's UDP one with ``udp``) and normalise one RGB image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, original-image frame.
        input_size: ``data.input_size`` (512 / 640).
        scale, min_scale: this test scale and the smallest one used.
        udp: the UDP resize (:func:`resize_transform`).

    Returns:
        ``(1, 3, h, w)`` float32 tensor (ImageNet-normalised) and the ``ResizeTransform``.

    Raises:
        TypeError / ValueError: not an ``(H, W, 3)`` uint8 array.
    """
    import torch

    x, tf = preprocess_array(image, input_size, scale, min_scale, udp=udp)
    return torch.from_numpy(x), tf


def preprocess_array(
    image: np.ndarray, input_size: int, scale: float = 1.0, min_scale: float = 1.0, *, udp: bool = False
) -> tuple[np.ndarray, ResizeTransform]:
    """:func:`preprocess` in numpy (no torch): the same resize and the same float32 operations.

    Returns:
        ``(1, 3, h, w)`` float32 array (ImageNet-normalised) and the ``ResizeTransform``.

    Raises:
        TypeError / ValueError: not an ``(H, W, 3)`` uint8 array.
    """
    image = check_image(image)
    tf = resize_transform(image.shape[0], image.shape[1], input_size, scale, min_scale, udp=udp)
    resized = cv2.warpAffine(image, tf.matrix, tf.size)  # bilinear, zero border (official; MMPose UDP likewise)
    x = resized.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray(((x - mean) / std)[None]), tf


def to_original(
    keypoints: np.ndarray, transform: ResizeTransform, map_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Map ``(N, K, C)`` decoded keypoints to original-image px; other columns unchanged.

    Without UDP the keypoints are in input px at scale 1 (the maps were projected there) and go through
    ``transform.inverse`` (official ``get_final_preds``). With a UDP ``transform`` they are in pixels of the decoded
    maps, ``map_size = (w, h)`` (default ``transform.size``), and ``x = x_map * box_w / (w - 1)``,
    ``y = y_map * box_h / (h - 1)`` with the box ``transform.scale`` (MMPose 0.x ``get_group_preds(use_udp=True)``).

    Raises:
        ValueError: with UDP, a map side < 2.
    """
    out = np.array(keypoints, dtype=np.float64, copy=True)
    if transform.udp:
        w, h = transform.size if map_size is None else map_size
        if min(w, h) < 2:
            raise ValueError(f"UDP maps need sides >= 2, got {map_size}")
        if out.size:
            out[..., 0] *= transform.scale[0] / (w - 1.0)
            out[..., 1] *= transform.scale[1] / (h - 1.0)
        return out
    if out.size:
        t = transform.inverse
        xy = out[..., :2].copy()
        out[..., 0] = t[0, 0] * xy[..., 0] + t[0, 1] * xy[..., 1] + t[0, 2]
        out[..., 1] = t[1, 0] * xy[..., 0] + t[1, 1] * xy[..., 1] + t[1, 2]
    return out

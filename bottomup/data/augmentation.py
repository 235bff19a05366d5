"""The training augmentation: one random affine per sample that warps the image, the ignore mask and the keypoints.

Reference: official HigherHRNet ``RandomAffineTransform`` + ``RandomHorizontalFlip``. One draw (:class:`AugmentParams`)
gives one ``(2, 3)`` original -> input matrix (``bottomup.data.transforms.affine_matrix``: crop, scale, rotation and
the flip folded in); the image is warped to ``S x S`` input px, the mask, with the matrix divided by each stride, to
``S/s x S/s`` heatmap px (pixels outside the image become 0 = ignored, as officially), and the keypoints by the same
matrix. Settings: :class:`bottomup.data.settings.AugmentationSettings`.

UDP (``udp=True``, ``data.udp``; Huang et al. CVPR 2020; MMPose 0.x ``BottomUpRandomAffine(use_udp=True)``): the
same draws, but the crop is centred at ``((W - 1) / 2, (H - 1) / 2)`` + the translation and mapped with sizes
counted as ``size - 1`` (``bottomup.data.transforms.udp_affine_matrix``), and each output's mask matrix is the input
matrix times ``(S/s - 1) / (S - 1)`` (``udp_output_matrix``) instead of divided by ``s``. MMPose draws the translation
as integers (``randint``) over ``+-max_translate * (W or H) * scale / 200`` px; here the draws stay those of
:meth:`Augmentation.random_params` with or without UDP.

Letters: N people, K keypoints, H x W original image, S input side, s output stride.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from bottomup.data.settings import AugmentationSettings, check_strides
from bottomup.data.transforms import (
    affine_matrix,
    scale_matrix,
    udp_affine_matrix,
    udp_output_matrix,
    warp_keypoints,
)

__all__ = ["AugmentParams", "Augmentation", "Augmented"]


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the augmentation (the identity by default = validation mode).

    Attributes:
        rotation: degrees, positive = counter-clockwise on screen.
        scale: multiplier of the reference crop side (``min(H, W)``, or ``max(H, W)`` with ``scale_type="long"``);
            > 1 zooms out. With scale-aware sigma, each person's sigma is divided by it (official).
        translate: ``(dx, dy)`` shift of the crop centre in pixels at the 200-px reference scale: the
            centre moves by ``translate * crop_side / 200`` original pixels (official ``max_translate`` units).
        flip: horizontal flip of the input (``x -> S - 1 - x``) with joints permuted by ``flip_index``.
    """

    rotation: float = 0.0
    scale: float = 1.0
    translate: tuple[float, float] = (0.0, 0.0)
    flip: bool = False


class Augmented(NamedTuple):
    """One image seen through one augmentation.

    Attributes:
        image: ``(S, S, 3)`` uint8 RGB, input px (black outside the original image).
        keypoints: ``(N, K, 3)`` float64 ``(x, y, visibility)`` in input px; joint channels permuted by
            ``flip_index`` when flipped.
        masks: one ``(S/s, S/s)`` float32 0/1 keep-mask per stride, heatmap px (0 outside the original image).
        matrix: ``(2, 3)`` float64 original -> input px (flip included).
    """

    image: np.ndarray
    keypoints: np.ndarray
    masks: list[np.ndarray]
    matrix: np.ndarray


def _mask_255(mask: np.ndarray) -> np.ndarray:
    """A keep-mask as the official uint8 ``mask * 255``: uint8 masks are taken as 0 / 255 already."""
    return mask if mask.dtype == np.uint8 else (mask * 255).astype(np.uint8)


class Augmentation:
    """Draws augmentations and applies them.

    Args:
        settings: the distributions and the mask warp (``data.augmentation``).
        input_size: S, side of the square network input in pixels (``data.input_size``).
        output_strides: one stride per output resolution (``model.strides``), e.g. ``(4, 2)``: masks of
            ``S/4`` and ``S/2`` px.
        flip_index: K ints, the joint each joint becomes under a horizontal flip
            (``bottomup.data.keypoints.flip_index_from_pairs``).
        udp: the UDP geometry (module docstring; ``data.udp``).

    Raises:
        ValueError: ``input_size`` not a positive multiple of every stride, or no stride.
    """

    def __init__(
        self,
        settings: AugmentationSettings,
        input_size: int,
        output_strides: Sequence[int],
        flip_index: Sequence[int],
        *,
        udp: bool = False,
    ) -> None:
        self.settings = settings
        self.udp = bool(udp)
        self.input_size = int(input_size)
        self.output_strides = check_strides(self.input_size, output_strides)
        self.flip_index = list(flip_index)

    @property
    def output_sizes(self) -> tuple[int, ...]:
        """Mask side ``S / s`` per stride."""
        return tuple(self.input_size // s for s in self.output_strides)

    def random_params(self, rng: np.random.Generator) -> AugmentParams:
        """Draw one augmentation from ``rng`` (official HigherHRNet distributions, in this order: rotation, scale,
        translation x, translation y, flip)."""
        s = self.settings
        return AugmentParams(
            rotation=float(rng.uniform(-s.max_rotation, s.max_rotation)),
            scale=float(rng.uniform(s.min_scale, s.max_scale)),
            translate=(
                float(rng.uniform(-s.max_translate, s.max_translate)),
                float(rng.uniform(-s.max_translate, s.max_translate)),
            ),
            flip=bool(rng.random() < s.flip_prob),
        )

    def draw(self, seed: int, epoch: int, index: int) -> AugmentParams:
        """The augmentation of sample ``index`` in ``epoch``: :meth:`random_params` of
        ``numpy.random.default_rng((seed, epoch, index))``, the same whatever the DataLoader workers and after a
        resume."""
        return self.random_params(np.random.default_rng((seed, epoch, index)))

    def matrix(self, height: int, width: int, params: AugmentParams) -> np.ndarray:
        """``(2, 3)`` original -> input affine for an image of ``height x width`` and ``params``.

        The crop side is ``min(H, W) * params.scale`` original px (``max(H, W)`` with ``scale_type="long"``),
        centred at ``(W / 2, H / 2) + params.translate * crop_side / 200`` (official HigherHRNet ``SCALE_TYPE``).
        With ``udp``: centred at ``((W - 1) / 2, (H - 1) / 2) + ...``, matrix :func:`udp_affine_matrix` (MMPose
        0.x ``BottomUpRandomAffine(use_udp=True)``: ``get_warp_matrix`` with ``size_input = 2 * center``,
        ``size_dst = S - 1``, ``size_target`` = the crop side).
        """
        side = max(height, width) if self.settings.scale_type == "long" else min(height, width)
        crop = side * params.scale
        shift = crop / 200.0
        if self.udp:
            center = (
                (width - 1.0) / 2.0 + params.translate[0] * shift,
                (height - 1.0) / 2.0 + params.translate[1] * shift,
            )
            return udp_affine_matrix(center, crop, params.rotation, self.input_size, flip=params.flip)
        center = (width / 2.0 + params.translate[0] * shift, height / 2.0 + params.translate[1] * shift)
        return affine_matrix(center, crop, params.rotation, self.input_size, flip=params.flip)

    def output_matrix(self, matrix: np.ndarray, stride: int) -> np.ndarray:
        """The original -> heatmap-px matrix of the output of ``stride`` from the input one: ``matrix / stride``,
        or with ``udp`` ``matrix * (S/stride - 1) / (S - 1)`` (:func:`udp_output_matrix`)."""
        if self.udp:
            return udp_output_matrix(matrix, self.input_size, self.input_size // stride)
        return scale_matrix(matrix, stride)

    def warp_mask(self, mask: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
        """Warp a keep-mask to a ``size x size`` output and binarise it (``mask_warp``; outside the image: 0).

        Args:
            mask: ``(H, W)`` in original px, 1 = keep: float 0/1, or uint8 0/255 (the official ``uint8(mask * 255)``
                already made, ``CocoKeypointAnnotations.keep_mask``).
            matrix: ``(2, 3)`` original -> output px.
            size: output side.

        Returns:
            ``(size, size)`` float32 0/1.
        """
        if self.settings.mask_warp == "uint8":  # official: uint8(mask * 255), bilinear, / 255 > 0.5 (128 / 255 kept)
            warped = cv2.warpAffine(_mask_255(mask), matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
            return (warped > 127).astype(np.float32)  # w / 255 > 0.5 <=> w >= 128 for the integers w (exact)
        src = (mask != 0).astype(np.float32) if mask.dtype == np.uint8 else mask
        warped = cv2.warpAffine(src, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
        return (warped > 0.5).astype(np.float32)

    def apply(self, image: np.ndarray, keypoints: np.ndarray, mask: np.ndarray, params: AugmentParams) -> Augmented:
        """Warp one image, its people and its keep-mask with the matrix of ``params``.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            keypoints: ``(N, K, 3)`` ``(x, y, visibility)`` in original px.
            mask: ``(H, W)`` keep-mask in original px: float 0/1, or uint8 0/255 (:meth:`warp_mask`).
            params: the augmentation (``AugmentParams()``: the identity crop).
        """
        if params.flip:
            keypoints = keypoints[:, self.flip_index]
        height, width = image.shape[:2]
        m = self.matrix(height, width, params)
        size = self.input_size
        warped = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        if self.settings.mask_warp == "uint8":
            mask = _mask_255(mask)  # once for every output
        masks = [
            self.warp_mask(mask, self.output_matrix(m, s), out)
            for s, out in zip(self.output_strides, self.output_sizes, strict=True)
        ]
        return Augmented(warped, warp_keypoints(keypoints, m), masks, m)

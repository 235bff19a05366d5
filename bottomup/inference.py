"""Test-time pipeline: resize, normalise, run the model (flip / multi-scale), aggregate, group, map back.

Behaviour of the official HigherHRNet ``tools/valid.py`` with ``TEST.PROJECT2IMAGE = True``:

1. ``resize_transform``: the short side becomes ``input_size * scale`` and the long side is rounded up to a
   multiple of 64 (``get_multi_scale_size`` / ``resize_align_multi_scale``); the image is centred, so the
   long side is padded (with zeros) or very slightly cropped by the warp.
2. ``preprocess``: ``cv2.warpAffine`` (bilinear), ``/255``, ImageNet mean / std.
3. ``aggregate_outputs``: every output is upsampled (bilinear, ``align_corners=False``) to the last
   (highest-resolution) output; heatmaps of all outputs are averaged, tags come from the first (1/4)
   output; with flip test the flipped image's outputs are flipped back, channels permuted by
   ``flip_index``, heatmaps averaged with the plain ones and tags concatenated (L doubles); everything is then
   projected (bilinear) to the input size at scale 1.
4. ``combine_scales``: heatmaps averaged over scales; tags from the scale-1 pass only when several scales are
   used (official ``aggregate_results``; if 1.0 is not among the scales, the tags of all scales are
   concatenated instead).
5. ``bottomup.grouping.group_keypoints`` on the projected maps, then ``to_original``: the inverse of the
   scale-1 resize maps keypoints to original-image pixels (official ``get_final_preds``).

``postprocess`` runs steps 3-5 from raw model outputs, so the pipeline can be driven with ideal outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from bottomup.grouping import group_keypoints

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ResizeTransform",
    "resize_transform",
    "preprocess",
    "aggregate_outputs",
    "combine_scales",
    "to_original",
    "postprocess",
    "run_model",
    "predict",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ResizeTransform:
    """The test-time resize of one image at one scale.

    Attributes:
        size: ``(width, height)`` of the network input, multiples of 64 on the long side.
        center: ``(2,)`` centre of the original image (official rounding ``int(w / 2 + 0.5)``).
        scale: ``(2,)`` source box size / 200 (official "scale" units).
        matrix: ``(2, 3)`` original-image px -> input px (cv2 convention).
        inverse: ``(2, 3)`` input px -> original-image px.
    """

    size: tuple[int, int]
    center: np.ndarray
    scale: np.ndarray
    matrix: np.ndarray
    inverse: np.ndarray


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


def resize_transform(
    height: int, width: int, input_size: int, scale: float = 1.0, min_scale: float = 1.0
) -> ResizeTransform:
    """Input size and affine transform of an ``height x width`` image at one test scale.

    Official ``get_multi_scale_size``: with ``s_min = ceil64(min_scale * input_size)`` the short side becomes
    ``int(s_min * scale / min_scale)`` and the long side ``int(ceil64(s_min * long / short) * scale / min_scale)``.

    Raises:
        ValueError: non-positive sizes or scales.
    """
    if height <= 0 or width <= 0 or input_size <= 0 or scale <= 0 or min_scale <= 0:
        raise ValueError(
            f"image size, input_size and scales must be positive, got {height}x{width}, "
            f"input_size={input_size}, scale={scale}, min_scale={min_scale}"
        )
    h, w = height, width
    center = np.array([int(w / 2.0 + 0.5), int(h / 2.0 + 0.5)])
    min_input = int((min_scale * input_size + 63) // 64 * 64)
    if w < h:
        w_resized = int(min_input * scale / min_scale)
        h_resized = int(int((min_input / w * h + 63) // 64 * 64) * scale / min_scale)
        scale_wh = np.array([w / 200.0, h_resized / w_resized * w / 200.0])
    else:
        h_resized = int(min_input * scale / min_scale)
        w_resized = int(int((min_input / h * w + 63) // 64 * 64) * scale / min_scale)
        scale_wh = np.array([w_resized / h_resized * h / 200.0, h / 200.0])
    size = (w_resized, h_resized)
    return ResizeTransform(
        size=size,
        center=center,
        scale=scale_wh,
        matrix=_affine(center, scale_wh, size, inverse=False),
        inverse=_affine(center, scale_wh, size, inverse=True),
    )


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must have shape (H, W, 3) (RGB), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB (0-255), got dtype {image.dtype}; convert with .astype(np.uint8)")
    return image


def preprocess(
    image: np.ndarray, input_size: int, scale: float = 1.0, min_scale: float = 1.0
) -> tuple[torch.Tensor, ResizeTransform]:
    """Resize (official ``resize_align_multi_scale``) and normalise one RGB image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, original-image frame.
        input_size: ``data.input_size`` (512 / 640).
        scale, min_scale: this test scale and the smallest one used.

    Returns:
        ``(1, 3, h, w)`` float32 tensor (ImageNet-normalised) and the ``ResizeTransform``.

    Raises:
        TypeError / ValueError: not an ``(H, W, 3)`` uint8 array.
    """
    image = _check_image(image)
    tf = resize_transform(image.shape[0], image.shape[1], input_size, scale, min_scale)
    resized = cv2.warpAffine(image, tf.matrix, tf.size)  # bilinear, zero border (official)
    x = torch.from_numpy(resized).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x - mean) / std)[None].contiguous(), tf


def _split(outputs: Sequence[torch.Tensor], num_keypoints: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Official ``get_multi_stage_outputs`` for one pass: heatmaps averaged over outputs, 1/4 tags, at the
    last output's size. Returns ``(N, K, h, w)`` heatmaps and ``(N, K * D, h, w)`` tags."""
    if not outputs:
        raise ValueError("model returned no outputs")
    size = outputs[-1].shape[-2:]
    if outputs[0].shape[1] <= num_keypoints or (outputs[0].shape[1] - num_keypoints) % num_keypoints:
        raise ValueError(
            f"first output must have K + K*D channels (K={num_keypoints} heatmaps, then tags), "
            f"got {outputs[0].shape[1]}"
        )
    heatmaps: torch.Tensor | int = 0
    tags = None
    for i, out in enumerate(outputs):
        if out.shape[1] < num_keypoints:
            raise ValueError(f"output {i} has {out.shape[1]} channels, fewer than K={num_keypoints}")
        if len(outputs) > 1 and i != len(outputs) - 1:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        heatmaps = heatmaps + out[:, :num_keypoints]
        if i == 0:
            tags = out[:, num_keypoints:]
    return heatmaps / len(outputs), tags


def aggregate_outputs(
    outputs: Sequence[torch.Tensor],
    flip_outputs: Sequence[torch.Tensor] | None = None,
    *,
    num_keypoints: int,
    flip_index: Sequence[int] | None = None,
    project_size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine the raw outputs of one scale (official ``get_multi_stage_outputs`` + flip + projection).

    Args:
        outputs: model outputs for the image, highest stride first, e.g. ``[(1, 2K, h/4, w/4), (1, K, h/2, w/2)]``:
            channels ``[0, K)`` of each are heatmaps, channels ``[K, K + K*D)`` of the first are tags.
        flip_outputs: the outputs for the horizontally flipped image *as the model returned them* (still
            mirrored), or None for no flip test.
        num_keypoints: K.
        flip_index: joint permutation under a horizontal flip (``KeypointLayout.flip_index``); required with
            ``flip_outputs``.
        project_size: ``(width, height)`` to project to (input size at scale 1; official PROJECT2IMAGE), or None
            to stay at the last output's resolution.

    Returns:
        heatmaps ``(N, K, H, W)`` (plain and flipped averaged) and tags ``(N, K, H, W, L)`` with
        ``L = D`` (no flip) or ``2 D`` (plain tags first).

    Raises:
        ValueError: inconsistent channel counts, or flip outputs without ``flip_index``.
    """
    heatmaps, tags = _split(outputs, num_keypoints)
    n, _, h, w = heatmaps.shape
    hms = [heatmaps]
    tms = [tags.reshape(n, num_keypoints, -1, h, w)]  # (N, K, D, h, w)
    if flip_outputs is not None:
        if flip_index is None:
            raise ValueError("flip_outputs given without flip_index")
        index = list(flip_index)
        if sorted(index) != list(range(num_keypoints)):
            raise ValueError(f"flip_index must be a permutation of range({num_keypoints}), got {index}")
        fh, ft = _split([torch.flip(o, [3]) for o in flip_outputs], num_keypoints)
        hms.append(fh[:, index])
        tms.append(ft.reshape(n, num_keypoints, -1, h, w)[:, index])
    # All maps in one (N, C, h, w) tensor, tags joint-major (channel k * L + l, plain tags first), so that the
    # projection is one interpolation and the result splits into views: the same values as projecting each map
    # on its own, without a fresh full-size buffer per map and per sum.
    tag = torch.cat(tms, dim=2)
    tag_dim = tag.shape[2]
    maps = torch.cat([*hms, tag.reshape(n, num_keypoints * tag_dim, h, w)], dim=1).contiguous()
    if project_size is not None:
        maps = F.interpolate(maps, size=(project_size[1], project_size[0]), mode="bilinear", align_corners=False)
    size = maps.shape[-2:]
    heat = maps[:, :num_keypoints]
    if len(hms) == 2:
        heat = heat.add_(maps[:, num_keypoints : 2 * num_keypoints]).div_(2.0)
    tag = maps[:, len(hms) * num_keypoints :].reshape(n, num_keypoints, tag_dim, *size)
    return heat, tag.permute(0, 1, 3, 4, 2).contiguous()


def combine_scales(
    per_scale: Sequence[tuple[float, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Official ``aggregate_results`` over scales (all projected to the same size).

    Args:
        per_scale: ``(scale, heatmaps (N, K, H, W), tags (N, K, H, W, L))`` per scale, in processing order
            (official: descending scale).

    Returns:
        heatmaps averaged over scales; tags of the scale-1 pass (all scales concatenated along L when there
        is a single scale or when 1.0 is not used).
    """
    if not per_scale:
        raise ValueError("no scales")
    if len(per_scale) == 1:  # x / 1.0 and a concatenation of one tensor would only copy
        return per_scale[0][1], per_scale[0][2]
    heat = per_scale[0][1]
    for _, h, _ in per_scale[1:]:
        heat = heat + h
    heat = heat / float(len(per_scale))
    chosen = [t for s, _, t in per_scale if s == 1]
    if not chosen:
        chosen = [t for _, _, t in per_scale]
    return heat, torch.cat(chosen, dim=4)


def to_original(keypoints: np.ndarray, transform: ResizeTransform) -> np.ndarray:
    """Map ``(N, K, C)`` keypoints from input px (scale 1) to original-image px; other columns unchanged."""
    out = np.array(keypoints, dtype=np.float64, copy=True)
    if out.size:
        t = transform.inverse
        xy = out[..., :2].copy()
        out[..., 0] = t[0, 0] * xy[..., 0] + t[0, 1] * xy[..., 1] + t[0, 2]
        out[..., 1] = t[1, 0] * xy[..., 0] + t[1, 1] * xy[..., 1] + t[1, 2]
    return out


def postprocess(
    per_scale_outputs: Sequence[tuple[float, Sequence[torch.Tensor], Sequence[torch.Tensor] | None]],
    base: ResizeTransform,
    *,
    num_keypoints: int,
    joint_order: Sequence[int],
    flip_index: Sequence[int] | None = None,
    grouping: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Everything after the network: aggregate, combine scales, group, map back to the original image.

    Args:
        per_scale_outputs: ``(scale, outputs, flip_outputs or None)`` per scale (batch of one image).
        base: the transform at scale 1 (``resize_transform(..., scale=1.0, min_scale=min(scales))``);
            maps are projected to ``base.size``.
        num_keypoints, joint_order, flip_index: layout (``KeypointLayout``).
        grouping: keyword arguments of ``group_keypoints`` (thresholds, ``max_people``, ...).

    Returns:
        ``keypoints (N, K, 3)`` float64 ``(x, y, score)`` in original-image pixels and ``scores (N,)`` float32.
    """
    per_scale = []
    for s, outs, flip_outs in per_scale_outputs:
        heat, tag = aggregate_outputs(
            outs, flip_outs, num_keypoints=num_keypoints, flip_index=flip_index, project_size=base.size
        )
        per_scale.append((s, heat, tag))
    heat, tag = combine_scales(per_scale)
    keypoints, scores = group_keypoints(heat[0], tag[0], joint_order=joint_order, **dict(grouping or {}))
    return to_original(keypoints[..., :3], base), scores


#: Precision name -> autocast dtype (None: plain fp32), for inference here and for training (``trainer.precision``).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def run_model(model: Callable, x: torch.Tensor) -> list[torch.Tensor]:
    """Call the model and normalise its output to a list of tensors."""
    out = model(x)
    if isinstance(out, torch.Tensor):
        return [out]
    return list(out)


def predict(
    model: Callable,
    image: np.ndarray,
    *,
    num_keypoints: int,
    joint_order: Sequence[int],
    input_size: int = 512,
    scales: Sequence[float] = (1.0,),
    flip_index: Sequence[int] | None = None,
    grouping: Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect people in one image (official test-time pipeline).

    Args:
        model: in eval mode, ``x (1, 3, h, w) -> [outputs per stride]``.
        image: ``(H, W, 3)`` uint8 RGB.
        num_keypoints, joint_order: layout.
        input_size: short side at scale 1.
        scales: test scales (official ``TEST.SCALE_FACTOR``), processed in descending order.
        flip_index: enables flip test when given.
        grouping: ``group_keypoints`` keyword arguments.
        device: where to run the model (default: the model's parameters' device, else CPU).
        precision: ``"fp32"`` (exact), or ``"bf16"`` / ``"fp16"`` autocast for the network only (outputs are
            cast back to float32 before aggregation and grouping). bf16 needs a CPU with AVX-512 BF16 / AMX or
            a CUDA GPU to be fast; fp16 is for CUDA.
        channels_last: feed the network NHWC tensors (faster convolutions with oneDNN / cuDNN; same results
            up to float rounding).

    A model whose weights are bf16 / fp16 (``bottomup.models.fast.prepare_for_inference``) gets its input in
    that dtype and runs without autocast; its outputs are cast back to float32.

    Returns:
        ``keypoints (N, K, 3)`` ``(x, y, score)`` original-image px, ``scores (N,)``.
    """
    image = _check_image(image)
    scales = sorted((float(s) for s in scales), reverse=True)
    if not scales:
        raise ValueError("scales must not be empty")
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    if device is None:
        device = first.device if first is not None else torch.device("cpu")
    min_scale = min(scales)
    base = resize_transform(image.shape[0], image.shape[1], input_size, 1.0, min_scale)
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of {list(AUTOCAST_DTYPES)}, got {precision!r}")
    dtype = AUTOCAST_DTYPES[precision]
    device = torch.device(device)

    weight_dtype = first.dtype if first is not None and first.dtype in (torch.bfloat16, torch.float16) else None

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if weight_dtype is not None:  # a low-precision copy (bottomup.models.fast.prepare_for_inference)
            return [o.float() for o in run_model(model, x.to(weight_dtype))]
        if dtype is None:
            return run_model(model, x)
        with torch.autocast(device.type, dtype=dtype):
            return [o.float() for o in run_model(model, x)]

    per_scale = []
    with torch.inference_mode():
        for s in scales:
            x, _ = preprocess(image, input_size, s, min_scale)
            x = x.to(device)
            outs = forward(x)
            flip_outs = forward(torch.flip(x, [3])) if flip_index is not None else None
            per_scale.append((s, outs, flip_outs))
        return postprocess(
            per_scale,
            base,
            num_keypoints=num_keypoints,
            joint_order=joint_order,
            flip_index=flip_index,
            grouping=grouping,
        )

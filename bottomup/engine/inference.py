"""Test-time pipeline: resize, normalise, run the model (flip / multi-scale), aggregate, group, map back.

Behaviour of the official HigherHRNet ``tools/valid.py`` with ``TEST.PROJECT2IMAGE = True``:

1. ``bottomup.data.transforms.resize_transform``: the short side becomes ``input_size * scale`` and the long side is rounded up to a
   multiple of 64 (``get_multi_scale_size`` / ``resize_align_multi_scale``); the image is centred, so the
   long side is padded (with zeros) or very slightly cropped by the warp.
2. ``bottomup.data.transforms.preprocess``: ``cv2.warpAffine`` (bilinear), ``/255``, ImageNet mean / std; then
   :func:`network_forward` (the network in the asked precision and memory format), on the mirrored input too.
3. ``aggregate_outputs``: every output is upsampled (bilinear, ``align_corners=False``) to the last
   (highest-resolution) output; heatmaps of all outputs are averaged, tags come from the first (1/4)
   output; with flip test the flipped image's outputs are flipped back, channels permuted by
   ``flip_index``, heatmaps averaged with the plain ones and tags concatenated (L doubles); everything is then
   projected (bilinear) to the input size at scale 1.
4. ``combine_scales``: heatmaps averaged over scales; tags from the scale-1 pass only when several scales are
   used (official ``aggregate_results``; if 1.0 is not among the scales, the tags of all scales are
   concatenated instead).
5. ``codec.decode`` (``bottomup.codec.grouping.group_keypoints``) on the projected maps, then ``to_original``: the
   inverse of the scale-1 resize maps keypoints to original-image pixels (official ``get_final_preds``).

:func:`run_pipeline` is the one implementation of steps 1-5: :class:`Predictor` (``bottomup.api.PoseEstimator``),
the evaluation, ``bottomup.vis.explain`` and the training pictures all go through it. ``postprocess`` runs steps
3-5 from raw model outputs, so the decode path can be driven with ideal outputs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bottomup.codec import GROUPING_KEYS, AssociativeEmbeddingCodec
from bottomup.core.keypoints import KeypointLayout
from bottomup.data.io import read_image
from bottomup.data.transforms import ResizeTransform, check_image, preprocess, resize_transform, to_original
from bottomup.engine.distributed import resolve_device
from bottomup.engine.people import Person, Prediction, keypoint_boxes, people_to_results
from bottomup.models.precision import autocast, check_precision

__all__ = [
    "aggregate_outputs",
    "aggregate_scales",
    "combine_scales",
    "postprocess",
    "run_model",
    "network_forward",
    "scale_map_channels",
    "PipelineOutput",
    "run_pipeline",
    "Person",
    "Prediction",
    "Predictor",
    "keypoint_boxes",
    "people_to_results",
    "config_test_group",
    "predictor_settings",
    "check_scales",
]


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
    tags_last: bool = True,
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
        tags_last: tags as ``(N, K, H, W, L)`` (what the grouping reads; a strided view, not a transposed copy),
            or, when False, ``(N, K, L, H, W)`` as the projection leaves them (the exported graph's layout: in a
            graph the transposed view would be a Transpose that copies).

    Returns:
        heatmaps ``(N, K, H, W)`` (plain and flipped averaged) and tags ``(N, K, H, W, L)`` (or
        ``(N, K, L, H, W)``, see ``tags_last``) with ``L = D`` (no flip) or ``2 D`` (plain tags first).

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
    # Plain and flipped heatmaps are averaged before the projection: bilinear interpolation is linear, so this is
    # the official average of the projected maps (to rounding) at a quarter of the cost. All maps then go in one
    # (N, C, h, w) tensor, tags joint-major (channel k * L + l, plain tags first), so that the projection is one
    # interpolation and the result splits into views, without a fresh full-size buffer per map.
    heat = hms[0] if len(hms) == 1 else (hms[0] + hms[1]) / 2.0
    tag = torch.cat(tms, dim=2)
    tag_dim = tag.shape[2]
    if project_size is not None:  # without a projection the joint tensor would only be split again
        maps = torch.cat([heat, tag.reshape(n, num_keypoints * tag_dim, h, w)], dim=1).contiguous()
        maps = F.interpolate(maps, size=(project_size[1], project_size[0]), mode="bilinear", align_corners=False)
        heat = maps[:, :num_keypoints]
        tag = maps[:, num_keypoints:].reshape(n, num_keypoints, tag_dim, *maps.shape[-2:])
    return heat, (tag.permute(0, 1, 3, 4, 2) if tags_last else tag)  # a view either way: the grouping reads strides


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


def postprocess(
    per_scale_outputs: Sequence[tuple[float, Sequence[torch.Tensor], Sequence[torch.Tensor] | None]],
    base: ResizeTransform,
    *,
    codec: AssociativeEmbeddingCodec,
) -> tuple[np.ndarray, np.ndarray]:
    """Everything after the network: aggregate, combine scales, decode (group), map back to the original image.

    Args:
        per_scale_outputs: ``(scale, outputs, flip_outputs or None)`` per scale (batch of one image); flip
            outputs are aggregated with ``codec.flip_index``.
        base: the transform at scale 1 (``resize_transform(..., scale=1.0, min_scale=min(scales))``);
            maps are projected to ``base.size``.
        codec: the layout (K, flip index, joint order) and grouping settings (``codec.decode``).

    Returns:
        ``keypoints (N, K, 3)`` float64 ``(x, y, score)`` in original-image pixels and ``scores (N,)`` float32.
    """
    heat, tag = aggregate_scales(per_scale_outputs, base, codec)
    keypoints, scores = codec.decode(heat[0], tag[0])
    return to_original(keypoints[..., :3], base), scores


def aggregate_scales(
    per_scale_outputs: Sequence[tuple[float, Sequence[torch.Tensor], Sequence[torch.Tensor] | None]],
    base: ResizeTransform,
    codec: AssociativeEmbeddingCodec,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``aggregate_outputs`` per scale (projected to ``base.size``), then ``combine_scales``.

    Returns:
        heatmaps ``(1, K, h, w)`` and tags ``(1, K, h, w, L)``, input pixels at scale 1.
    """
    per_scale = []
    for s, outs, flip_outs in per_scale_outputs:
        heat, tag = aggregate_outputs(
            outs,
            flip_outs,
            num_keypoints=codec.num_keypoints,
            flip_index=codec.flip_index,
            project_size=base.size,
        )
        per_scale.append((s, heat, tag))
    return combine_scales(per_scale)


def run_model(model: Callable, x: torch.Tensor) -> list[torch.Tensor]:
    """Call the model and normalise its output to a list of tensors."""
    out = model(x)
    if isinstance(out, torch.Tensor):
        return [out]
    return list(out)


def _first_parameter(model: Callable) -> torch.Tensor | None:
    params = getattr(model, "parameters", None)
    return next(iter(params()), None) if callable(params) else None


def network_forward(
    model: Callable, x: torch.Tensor, *, precision: str = "fp32", channels_last: bool = False
) -> list[torch.Tensor]:
    """One test-time call of the network: the only place inference runs it (prediction, explanation,
    evaluation, training pictures).

    * A model whose weights are bf16 / fp16 (``bottomup.models.fast.prepare_for_inference``) gets ``x`` in that
      dtype and runs without autocast.
    * Otherwise ``precision`` ``"bf16"`` / ``"fp16"`` runs it under ``torch.autocast`` on ``x``'s device;
      ``"fp32"`` runs it as is (exact).
    * Outputs of a low-precision pass are cast back to float32 for aggregation and grouping.

    Args:
        model: in eval mode, ``x (1, 3, h, w) -> [outputs per stride]`` (or one tensor).
        x: ``(1, 3, h, w)`` float32 normalised input on the model's device.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (``bottomup.models.precision``).
        channels_last: feed NHWC memory (same values up to float rounding).

    Returns:
        the outputs, float32 (the model's own dtype for an fp32 pass), in the HigherHRNet layout: the SWAHR scale
        maps of a ``swahr`` model are cut off (:func:`scale_map_channels`).

    Raises:
        ValueError: unknown ``precision``.
    """
    check_precision(precision)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    first = _first_parameter(model)
    if first is not None and first.dtype in (torch.bfloat16, torch.float16):  # a prepared low-precision copy
        outputs = [o.float() for o in run_model(model, x.to(first.dtype))]
    elif precision == "fp32":
        outputs = run_model(model, x)
    else:
        with autocast(x.device.type, precision):
            outputs = [o.float() for o in run_model(model, x)]
    lead = scale_map_channels(model)
    return [o[:, lead:] for o in outputs] if lead else outputs


def scale_map_channels(model: Callable) -> int:
    """How many leading channels of each output are SWAHR scale maps: K for a ``HigherHRNet(swahr=True)`` (also
    inside a ``torch.compile`` / DDP wrapper or a ``prepare_for_inference`` copy), else 0.

    Test time uses the heatmaps and tags only (official SWAHR ``get_multi_stage_outputs`` drops channels
    ``[0, K)`` of every output), so :func:`network_forward` cuts these channels off and the rest of the pipeline
    sees the HigherHRNet layout.
    """
    inner = getattr(model, "_orig_mod", model)
    inner = getattr(inner, "module", inner)
    return int(inner.num_keypoints) if getattr(inner, "swahr", False) else 0


@dataclass(frozen=True)
class PipelineOutput:
    """One image through the whole test-time pipeline (:func:`run_pipeline`).

    Attributes:
        heatmaps: ``(1, K, h, w)`` float32 tensor, averaged over outputs, flip and scales, projected to the input
            size at scale 1 (input pixels).
        tags: ``(1, K, h, w, L)`` float32 tensor at the same resolution (``L = 2 D`` with flip test).
        transform: the scale-1 ``ResizeTransform`` (original <-> input pixels).
        grouped: ``(N, K, 3 + L)`` float32 codec output in input pixels: ``x, y, score``, then the tag at the
            detection (0 for joints filled by refinement or missing).
        keypoints: ``(N, K, 3)`` float64 ``x, y, score`` in original-image pixels.
        scores: ``(N,)`` float32 person scores.
    """

    heatmaps: torch.Tensor
    tags: torch.Tensor
    transform: ResizeTransform
    grouped: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray


def run_pipeline(
    model: Callable,
    image: np.ndarray,
    *,
    codec: AssociativeEmbeddingCodec,
    input_size: int = 512,
    scales: Sequence[float] = (1.0,),
    flip_test: bool = True,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> PipelineOutput:
    """Detect people in one image: the one test-time path (official ``tools/valid.py`` behaviour).

    For each scale, largest first: ``preprocess`` -> :func:`network_forward` (and on the mirrored input when
    ``flip_test``); then :func:`aggregate_scales` (outputs, flip, projection, scales), ``codec.decode`` and
    ``to_original``. Runs under ``torch.inference_mode``.

    Args:
        model: in eval mode, ``x (1, 3, h, w) -> [outputs per stride]``.
        image: ``(H, W, 3)`` uint8 RGB, original frame.
        codec: layout (K, joint order, flip index) and grouping settings.
        input_size: short side at scale 1 (``data.input_size``).
        scales: test scales (official ``TEST.SCALE_FACTOR``).
        flip_test: average with the mirrored image (needs ``codec.flip_index``).
        device: where the network runs (default: the model's parameters' device, else CPU).
        precision, channels_last: see :func:`network_forward`.

    Returns:
        a :class:`PipelineOutput`.

    Raises:
        TypeError / ValueError: not an ``(H, W, 3)`` uint8 array; empty or non-positive scales; flip test without
            a flip index; unknown precision.
    """
    image = check_image(image)
    scales = sorted((float(s) for s in scales), reverse=True)
    if not scales:
        raise ValueError("scales must not be empty")
    if flip_test and codec.flip_index is None:
        raise ValueError("flip_test needs the codec's flip_index (flip pairs of the keypoint layout)")
    check_precision(precision)
    if device is None:
        first = _first_parameter(model)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    min_scale = min(scales)
    base = resize_transform(image.shape[0], image.shape[1], input_size, 1.0, min_scale)
    per_scale = []
    with torch.inference_mode():
        for s in scales:
            x, _ = preprocess(image, input_size, s, min_scale)
            x = x.to(device)
            outs = network_forward(model, x, precision=precision, channels_last=channels_last)
            flips = None
            if flip_test:
                flips = network_forward(model, torch.flip(x, [3]), precision=precision, channels_last=channels_last)
            per_scale.append((s, outs, flips))
        heat, tag = aggregate_scales(per_scale, base, codec)
        grouped, scores = codec.decode(heat[0], tag[0])
    keypoints = to_original(grouped[..., :3], base)
    return PipelineOutput(heat, tag, base, grouped, keypoints, scores)


def config_test_group(cfg: Any) -> Any:
    """A config's test-time group: ``cfg.test``, or ``cfg.grouping`` (its name in bottomup 0.1 configs, which the
    checkpoints of that version hold); empty when neither is there."""
    return cfg.get("test") or cfg.get("grouping") or {}


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


def predictor_settings(cfg: Any) -> dict[str, Any]:
    """``Predictor`` keyword arguments from a project config's test-time group.

    Reads ``cfg.test`` (``conf/test/default.yaml``: ``input_size``, ``scales``, ``flip_test``, ``precision``,
    ``channels_last``, ``fold_bn``, ``compile`` and the grouping keys), or ``cfg.grouping``, its name in the
    configs saved by bottomup 0.1 checkpoints; ``input_size`` falls back to ``cfg.data.input_size``.

    Returns:
        a dict (keys of :class:`Predictor` besides ``model`` / ``layout`` / ``device``).
    """
    group = config_test_group(cfg)
    out: dict[str, Any] = {k: group[k] for k in GROUPING_KEYS if k in group}
    out["input_size"] = int(group.get("input_size", cfg.data.input_size))
    out["scales"] = [float(s) for s in group.get("scales", [1.0])]
    out["flip_test"] = bool(group.get("flip_test", True))
    out["precision"] = str(group.get("precision", "fp32"))
    out["channels_last"] = bool(group.get("channels_last", False))
    out["fold_bn"] = bool(group.get("fold_bn", False))
    out["compile"] = bool(group.get("compile", False))
    return out


#: Channel orders an image array may come in (``Predictor(color=...)``).
COLOR_ORDERS: tuple[str, ...] = ("rgb", "bgr")


class Predictor:
    """A network with its test-time settings: image in, people out (:func:`run_pipeline`).

    ``bottomup.api.PoseEstimator`` is this class with constructors from configs and checkpoints; the evaluation,
    the training pictures and ``bottomup.vis.explain`` all run images through :meth:`run`.

    Args:
        model: network ``x (1, 3, h, w) -> [outputs per stride]`` (e.g. ``bottomup.models.HigherHRNet``);
            put in eval mode and moved to ``device``.
        layout: the keypoint layout (names, flip pairs, joint order); or give ``num_keypoints`` (channel-order
            names ``"0".."K-1"``, no flip pairs) -- then flip test needs ``flip_index``.
        num_keypoints, flip_index, joint_order: override the layout's.
        input_size: short side of the network input at scale 1 (512 / 640).
        scales: test scales (official ``TEST.SCALE_FACTOR``).
        flip_test: average with the mirrored image (needs flip pairs).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` / ``None`` (CUDA if available, else CPU).
        precision: ``"fp32"`` (default, exact), ``"bf16"`` or ``"fp16"`` (autocast of the network, or the
            weights' dtype with ``fold_bn``).
        channels_last: run the network in NHWC memory format.
        fold_bn: run a prepared copy of the network (``bottomup.models.fast.prepare_for_inference``):
            BatchNorm folded into the convolutions and weights cast to ``precision`` instead of autocast
            (bf16 + channels_last W32-512 forward on 2 AVX-512 cores: 0.27 s against 0.28 s with autocast).
        compile: also ``torch.compile`` that copy (implies the prepared copy; the first image compiles).
        color: channel order of the arrays given to :meth:`run` / ``__call__``: ``"rgb"`` (default; what
            ``bottomup.data.load_image``, PIL and matplotlib give) or ``"bgr"`` (what ``cv2.imread`` and OpenCV's
            video capture give). Image files are always decoded correctly. The wrong order finds other people.
        **grouping: decode settings (``bottomup.codec.GROUPING_KEYS``), held by :attr:`codec`.

    Raises:
        ValueError: unknown grouping keys, precision, device or color, or an inconsistent layout.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        layout: KeypointLayout | None = None,
        num_keypoints: int | None = None,
        flip_index: Sequence[int] | None = None,
        joint_order: Sequence[int] | None = None,
        input_size: int = 512,
        scales: Sequence[float] = (1.0,),
        flip_test: bool = True,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        fold_bn: bool = False,
        compile: bool = False,
        color: str = "rgb",
        **grouping: Any,
    ) -> None:
        if color not in COLOR_ORDERS:
            raise ValueError(f"color must be one of {COLOR_ORDERS} (the channel order of image arrays), got {color!r}")
        self.color = color
        unknown = set(grouping) - set(GROUPING_KEYS)
        if unknown:
            raise ValueError(f"unknown grouping settings {sorted(unknown)}; allowed: {list(GROUPING_KEYS)}")
        if layout is None:
            if num_keypoints is None:
                raise ValueError("give a KeypointLayout (layout=...) or num_keypoints")
            layout = KeypointLayout(keypoint_names=tuple(str(i) for i in range(num_keypoints)))
        self.layout = layout
        #: owns the layout's indices and the grouping settings; decodes every image
        self.codec = AssociativeEmbeddingCodec(
            layout.num_keypoints,
            joint_order=layout.joint_order_index if joint_order is None else joint_order,
            flip_index=layout.flip_index if flip_index is None else flip_index,
            **grouping,
        )
        self.input_size = int(input_size)
        self.scales = check_scales(scales, self.input_size)
        self.flip_test = bool(flip_test)
        self.device = resolve_device("auto" if device is None else str(device), key="device")
        self.precision = check_precision(precision)
        self.channels_last = bool(channels_last)
        self.fold_bn, self.compile = bool(fold_bn), bool(compile)
        if self.fold_bn or self.compile:
            from bottomup.models.fast import prepare_for_inference

            self.model = prepare_for_inference(
                model.to(self.device),
                precision=precision,
                channels_last=self.channels_last,
                fold_bn=self.fold_bn,
                compile=self.compile,
            )
        else:
            self.model = model.to(self.device).eval()
            if self.channels_last:
                self.model = self.model.to(memory_format=torch.channels_last)

    #: What ``__call__`` returns; ``bottomup.api.PoseEstimator`` returns ``bottomup.api.Prediction`` (with drawing).
    prediction_type: type[Prediction] = Prediction

    @property
    def flip_index(self) -> list[int]:
        """Joint permutation under a horizontal flip (``codec.flip_index``)."""
        return list(self.codec.flip_index)

    @property
    def joint_order(self) -> list[int]:
        """Grouping's matching order (``codec.joint_order``)."""
        return list(self.codec.joint_order)

    @property
    def grouping(self) -> dict[str, Any]:
        """The decode settings (``codec.grouping``)."""
        return self.codec.grouping

    @classmethod
    def from_config(cls, cfg: Any, model: torch.nn.Module, **overrides: Any) -> Predictor:
        """``model`` with the layout of ``cfg.data`` and the test settings of ``cfg.test`` (:func:`predictor_settings`);
        ``overrides`` replace constructor arguments (``input_size``, ``scales``, ``flip_test``, ``device``, ...).

        Raises:
            ValueError: as the constructor.
        """
        kwargs = predictor_settings(cfg)
        kwargs.update(overrides)
        return cls(model, layout=KeypointLayout.from_config(cfg.data), **kwargs)

    def read(self, image: str | os.PathLike | np.ndarray) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 RGB image: a file decoded, an array checked (and reversed from BGR when
        ``color="bgr"``).

        Raises:
            bottomup.data.io.ImageReadError: missing / unreadable file.
            TypeError / ValueError: an array of the wrong type, shape or dtype.
        """
        rgb = read_image(image)
        if self.color == "bgr" and isinstance(image, np.ndarray):
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        return rgb

    def run(self, image: str | os.PathLike | np.ndarray) -> PipelineOutput:
        """One image through :func:`run_pipeline` with these settings (maps and people).

        Raises:
            bottomup.data.io.ImageReadError: missing / unreadable file.
            TypeError / ValueError: an array of the wrong type, shape or dtype.
        """
        return self._pipeline(self.read(image))

    def _pipeline(self, rgb: np.ndarray) -> PipelineOutput:
        return run_pipeline(
            self.model,
            rgb,
            codec=self.codec,
            input_size=self.input_size,
            scales=self.scales,
            flip_test=self.flip_test,
            device=self.device,
            precision=self.precision,
            channels_last=self.channels_last,
        )

    def __call__(self, image: str | os.PathLike | np.ndarray) -> Prediction:
        """Detect people.

        Args:
            image: image file path, or ``(H, W, 3)`` uint8 array in the channel order ``color``.

        Returns:
            :attr:`prediction_type` (a :class:`Prediction`) in original-image pixels, holding the RGB image.

        Raises:
            bottomup.data.io.ImageReadError: missing / unreadable file.
            TypeError / ValueError: array of the wrong type, shape or dtype.
        """
        rgb = self.read(image)
        out = self._pipeline(rgb)
        return self.prediction_type(
            keypoints=out.keypoints,
            scores=out.scores,
            keypoint_names=self.layout.keypoint_names,
            skeleton=tuple(tuple(int(j) for j in limb) for limb in self.layout.skeleton_index),
            image=rgb,
            category_id=self.layout.category_id,
        )

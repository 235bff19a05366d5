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

With ``test.udp`` (:class:`bottomup.engine.settings.TestSettings`; MMPose 0.x ``AssociativeEmbedding.forward_test``
with its UDP config: ``use_udp=True``, ``project2image=False``, ``align_corners=True``): step 1 is the UDP resize
(scaling about pixel (0, 0), ``resize_transform(udp=True)``); in steps 3-4 every resize is bilinear with
``align_corners=True`` and the maps are not projected to the input: heatmaps go to the last (highest-resolution)
output of the largest scale (official ``aggregate_stage_flip`` + ``aggregate_scale``, index 0 = the largest scale),
tags of the chosen scales to the same size; step 5 decodes with the UDP adjust / refine and maps back with
``to_original(map_size=...)`` (MMPose ``get_group_preds(use_udp=True)``).

:func:`run_pipeline` is the one implementation of steps 1-5: :class:`TorchBackend` runs it for
``bottomup.engine.estimator.PoseEstimator`` (and so for ``bottomup.api.PoseEstimator``, the evaluation,
``bottomup.engine.explain`` and the training pictures). ``postprocess`` runs steps 3-5 from raw model outputs, so
the decode path can be driven with ideal outputs.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bottomup.codec import AssociativeEmbeddingCodec
from bottomup.data.io import read_image
from bottomup.data.transforms import ResizeTransform, check_image, preprocess, resize_transform, to_original
from bottomup.engine.distributed import resolve_device
from bottomup.engine.people import Person, PipelineOutput, Prediction, keypoint_boxes, people_to_results
from bottomup.engine.settings import MAX_INPUT_SIDE, MIN_INPUT_SIDE, TestSettings, check_scales
from bottomup.models.precision import AUTO, autocast, check_precision

log = logging.getLogger(__name__)

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
    "TorchBackend",
    "keypoint_boxes",
    "people_to_results",
    "check_scales",
    "read_image",
    "MIN_INPUT_SIDE",
    "MAX_INPUT_SIDE",
]


def _split(
    outputs: Sequence[torch.Tensor], num_keypoints: int, align_corners: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Official ``get_multi_stage_outputs`` for one pass: heatmaps averaged over outputs, 1/4 tags, at the
    last output's size. Returns ``(N, K, h, w)`` heatmaps and ``(N, K * D, h, w)`` tags.

    With ``align_corners`` (UDP; MMPose 0.x ``aggregate_stage_flip`` with ``align_corners=True``) the heatmaps are
    resized with ``align_corners=True`` and the tags stay at the first output's size (MMPose resizes them once, to
    the final maps, after the scales are combined)."""
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
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=align_corners)
        heatmaps = heatmaps + out[:, :num_keypoints]
        if i == 0:
            tags = (outputs[0] if align_corners else out)[:, num_keypoints:]
    return heatmaps / len(outputs), tags


def aggregate_outputs(
    outputs: Sequence[torch.Tensor],
    flip_outputs: Sequence[torch.Tensor] | None = None,
    *,
    num_keypoints: int,
    flip_index: Sequence[int] | None = None,
    project_size: tuple[int, int] | None = None,
    tags_last: bool = True,
    align_corners: bool = False,
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
        align_corners: of every bilinear resize (stages and projection); ``True`` under UDP (MMPose 0.x's UDP
            config), ``False`` official HigherHRNet.

    Returns:
        heatmaps ``(N, K, H, W)`` (plain and flipped averaged) and tags ``(N, K, H, W, L)`` (or
        ``(N, K, L, H, W)``, see ``tags_last``) with ``L = D`` (no flip) or ``2 D`` (plain tags first); with
        ``align_corners`` (UDP) and no ``project_size`` the tags stay at the first output's size.

    Raises:
        ValueError: inconsistent channel counts, or flip outputs without ``flip_index``.
    """
    heatmaps, tags = _split(outputs, num_keypoints, align_corners)
    n, _, h, w = heatmaps.shape
    th, tw = tags.shape[-2:]  # (h, w), or the first output's size under UDP
    hms = [heatmaps]
    tms = [tags.reshape(n, num_keypoints, -1, th, tw)]  # (N, K, D, th, tw)
    if flip_outputs is not None:
        if flip_index is None:
            raise ValueError("flip_outputs given without flip_index")
        index = list(flip_index)
        if sorted(index) != list(range(num_keypoints)):
            raise ValueError(f"flip_index must be a permutation of range({num_keypoints}), got {index}")
        fh, ft = _split([torch.flip(o, [3]) for o in flip_outputs], num_keypoints, align_corners)
        hms.append(fh[:, index])
        tms.append(ft.reshape(n, num_keypoints, -1, th, tw)[:, index])
    # Plain and flipped heatmaps are averaged before the projection: bilinear interpolation is linear, so this is
    # the official average of the projected maps (to rounding) at a quarter of the cost. All maps then go in one
    # (N, C, h, w) tensor, tags joint-major (channel k * L + l, plain tags first), so that the projection is one
    # interpolation and the result splits into views, without a fresh full-size buffer per map.
    heat = hms[0] if len(hms) == 1 else (hms[0] + hms[1]) / 2.0
    tag = torch.cat(tms, dim=2)
    tag_dim = tag.shape[2]
    if project_size is not None and (th, tw) != (h, w):  # UDP: heatmaps and tags from their own sizes
        size = (project_size[1], project_size[0])
        if (h, w) != size:
            heat = F.interpolate(heat, size=size, mode="bilinear", align_corners=align_corners)
        tag = F.interpolate(
            tag.reshape(n, num_keypoints * tag_dim, th, tw), size=size, mode="bilinear", align_corners=align_corners
        ).reshape(n, num_keypoints, tag_dim, *size)
    elif project_size is not None:  # without a projection the joint tensor would only be split again
        maps = torch.cat([heat, tag.reshape(n, num_keypoints * tag_dim, h, w)], dim=1).contiguous()
        maps = F.interpolate(
            maps, size=(project_size[1], project_size[0]), mode="bilinear", align_corners=align_corners
        )
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
            maps are projected to ``base.size``. A UDP transform (``resize_transform(udp=True)``) runs the UDP
            pipeline (module docstring): maps at the largest scale's last output, UDP decode and mapping back.
        codec: the layout (K, flip index, joint order) and grouping settings (``codec.decode``).

    Returns:
        ``keypoints (N, K, 3)`` float64 ``(x, y, score)`` in original-image pixels and ``scores (N,)`` float32.
    """
    heat, tag = aggregate_scales(per_scale_outputs, base, codec)
    keypoints, scores = codec.decode(heat[0], tag[0], udp=base.udp)
    return to_original(keypoints[..., :3], base, map_size=_map_size(heat)), scores


def _map_size(maps: torch.Tensor | np.ndarray) -> tuple[int, int]:
    """``(width, height)`` of ``(..., h, w)`` maps."""
    return int(maps.shape[-1]), int(maps.shape[-2])


def aggregate_scales(
    per_scale_outputs: Sequence[tuple[float, Sequence[torch.Tensor], Sequence[torch.Tensor] | None]],
    base: ResizeTransform,
    codec: AssociativeEmbeddingCodec,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``aggregate_outputs`` per scale (projected to ``base.size``), then ``combine_scales``.

    With a UDP ``base`` (``base.udp``; MMPose 0.x UDP config): bilinear resizes with ``align_corners=True``, and the
    maps go to the size of the last output of the largest scale instead of ``base.size``.

    Returns:
        heatmaps ``(1, K, h, w)`` and tags ``(1, K, h, w, L)``: input pixels at scale 1, or with UDP pixels of that
        output (pixel centres at the integers, corners on the input's corners).

    Raises:
        ValueError: no scale.
    """
    if not per_scale_outputs:
        raise ValueError("no scales")
    size = base.size
    if base.udp:
        largest = max(per_scale_outputs, key=lambda item: item[0])[1]
        size = _map_size(largest[-1])
    per_scale = []
    for s, outs, flip_outs in per_scale_outputs:
        heat, tag = aggregate_outputs(
            outs,
            flip_outs,
            num_keypoints=codec.num_keypoints,
            flip_index=codec.flip_index,
            project_size=size,
            align_corners=base.udp,
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


def run_pipeline(
    model: Callable,
    image: np.ndarray,
    *,
    codec: AssociativeEmbeddingCodec,
    settings: TestSettings | None = None,
    device: torch.device | str | None = None,
) -> PipelineOutput:
    """Detect people in one image: the one test-time path (official ``tools/valid.py`` behaviour).

    For each scale, largest first: ``preprocess`` -> :func:`network_forward` (and on the mirrored input when
    ``flip_test``); then :func:`aggregate_scales` (outputs, flip, projection, scales), ``codec.decode`` and
    ``to_original``, each with ``settings.udp`` (module docstring). Runs under ``torch.inference_mode``.

    Args:
        model: in eval mode, ``x (1, 3, h, w) -> [outputs per stride]``.
        image: ``(H, W, 3)`` uint8 RGB, original frame.
        codec: layout (K, joint order, flip index) and the grouping settings the decode applies.
        settings: ``input_size`` (short side at scale 1), ``scales``, ``flip_test`` (needs ``codec.flip_index``),
            ``precision`` and ``channels_last`` (:func:`network_forward`) are read; the network is used as it is
            (``fold_bn`` / ``compile`` are the backend's: :class:`TorchBackend`), the grouping is ``codec``'s.
            Default ``TestSettings()``.
        device: where the network runs (default: the model's parameters' device, else CPU).

    Returns:
        a :class:`PipelineOutput`.

    Raises:
        TypeError / ValueError: not an ``(H, W, 3)`` uint8 array; empty or non-positive scales; flip test without
            a flip index; unknown precision.
    """
    opts = TestSettings() if settings is None else settings
    input_size, flip_test, precision, channels_last = (
        opts.input_size,
        opts.flip_test,
        opts.precision,
        opts.channels_last,
    )
    image = check_image(image)
    scales = sorted(opts.scales, reverse=True)
    if flip_test and codec.flip_index is None:
        raise ValueError("flip_test needs the codec's flip_index (flip pairs of the keypoint layout)")
    if device is None:
        first = _first_parameter(model)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    min_scale = min(scales)
    base = resize_transform(image.shape[0], image.shape[1], input_size, 1.0, min_scale, udp=opts.udp)
    per_scale = []
    with torch.inference_mode():
        for s in scales:
            x, _ = preprocess(image, input_size, s, min_scale, udp=opts.udp)
            x = x.to(device)
            outs = network_forward(model, x, precision=precision, channels_last=channels_last)
            flips = None
            if flip_test:
                flips = network_forward(model, torch.flip(x, [3]), precision=precision, channels_last=channels_last)
            per_scale.append((s, outs, flips))
        heat, tag = aggregate_scales(per_scale, base, codec)
        grouped, scores = codec.decode(heat[0], tag[0], udp=opts.udp)
    keypoints = to_original(grouped[..., :3], base, map_size=_map_size(heat))
    return PipelineOutput(heat, tag, base, grouped, keypoints, scores)


class TorchBackend:
    """A PyTorch network behind ``PoseEstimator``: :func:`run_pipeline` with the settings' precision, memory format,
    scales and flip test, and with ``fold_bn`` / ``compile`` a prepared copy
    (``bottomup.models.fast.prepare_for_inference``: BatchNorm folded, weights in ``precision``).

    Args:
        model: ``x (1, 3, h, w) -> [outputs per stride]`` (e.g. ``bottomup.models.HigherHRNet``). Without
            ``fold_bn`` / ``compile`` it runs as it is: put in eval mode, moved to ``device`` and, with
            ``channels_last``, to NHWC, in place; with them, a prepared copy runs and ``model`` is only moved.
        settings: the test-time settings. ``precision="auto"``: the path (precision, channels_last, fold_bn) is
            picked by measurement on ``device`` (``bottomup.models.fast.measured_fast_path``: a short probe of a
            copy of ``model``, cached per machine, torch version and network; ``channels_last`` / ``fold_bn`` set
            to true keep only the paths with them), logged, and :attr:`settings` hold the choice.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` / ``None`` (CUDA if available, else CPU).
        follow: ``model`` is a network in training that goes on changing (in-training evaluation and pictures):
            its memory format is never changed (``channels_last`` then only feeds NHWC input), a prepared copy is
            compiled without freezing, and :meth:`refresh` brings that copy up to date in place (no new copy, no
            recompilation).

    Raises:
        ValueError: an unknown device.
    """

    name = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        settings: TestSettings,
        *,
        device: str | torch.device | None = None,
        follow: bool = False,
    ) -> None:
        self.device = resolve_device("auto" if device is None else str(device), key="device")
        self.follow = bool(follow)
        #: the network given (a prepared copy is made from it)
        self.source = model
        #: what ``precision="auto"`` measured and picked (``measured_fast_path``'s record: ``path``, ``timings_ms``,
        #: ``correct``, ``cached``, ...); ``None`` when the settings named the path
        self.fast_path: dict[str, Any] | None = None
        self.settings = self._resolve(settings)
        self.model = self._prepare(model, self.settings)

    def _resolve(self, settings: TestSettings) -> TestSettings:
        """``settings`` with ``precision="auto"`` replaced by the measured path (recorded in :attr:`fast_path`)."""
        if settings.precision != AUTO:
            return settings
        from bottomup.models.fast import describe_fast_path, measured_fast_path

        (precision, channels_last, fold_bn), record = measured_fast_path(
            self.source, self.device, channels_last=settings.channels_last, fold_bn=settings.fold_bn
        )
        self.fast_path = record
        log.info("test.precision=auto on %s: %s", self.device, describe_fast_path(record))
        return settings.replace(precision=precision, channels_last=channels_last, fold_bn=fold_bn)

    @staticmethod
    def _copies(settings: TestSettings) -> bool:
        return settings.fold_bn or settings.compile

    def _prepare(self, model: torch.nn.Module, settings: TestSettings) -> torch.nn.Module:
        if self._copies(settings):
            from bottomup.models.fast import prepare_for_inference

            return prepare_for_inference(
                model.to(self.device),
                precision=settings.precision,
                channels_last=settings.channels_last,
                fold_bn=settings.fold_bn,
                compile=settings.compile,
                freeze=not self.follow,
            )
        out = model.to(self.device).eval()
        return out.to(memory_format=torch.channels_last) if settings.channels_last and not self.follow else out

    def refresh(self) -> None:
        """Bring a prepared copy up to date with the network's current weights (``follow``; in place).

        Without ``fold_bn`` / ``compile`` the network itself runs: nothing to do, but its eval mode is set again."""
        if self._copies(self.settings):
            from bottomup.models.fast import refresh_prepared

            refresh_prepared(self.model, self.source)
        else:
            self.model.eval()

    def run(self, rgb: np.ndarray, codec: AssociativeEmbeddingCodec) -> PipelineOutput:
        """:func:`run_pipeline` on one ``(H, W, 3)`` uint8 RGB image."""
        return run_pipeline(self.model, rgb, codec=codec, settings=self.settings, device=self.device)

    def with_settings(self, settings: TestSettings) -> TorchBackend:
        """The same network with other settings (prepared again only when the network's side changed)."""
        out = copy.copy(self)
        out.settings = out._resolve(settings)  # a new fast_path record with precision="auto"
        network_keys = ("precision", "channels_last", "fold_bn", "compile")
        if any(getattr(out.settings, k) != getattr(self.settings, k) for k in network_keys):
            if settings.precision != AUTO:  # the path named explicitly: no longer auto's choice
                out.fast_path = None
            out.model = out._prepare(self.source, out.settings)
        return out

    def __repr__(self) -> str:
        auto = f", auto: {self.fast_path['path']}" if self.fast_path else ""
        return f"TorchBackend({type(self.source).__name__} on {self.device}{auto})"

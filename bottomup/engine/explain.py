"""What the network sees and predicts: the intermediate maps of the test-time pipeline, and training pictures.

``explain(estimator, image)`` runs the image through ``estimator.run`` (``bottomup.engine.inference.run_pipeline``,
the one test-time path that ``PoseEstimator.__call__`` takes too: ``preprocess`` -> ``network_forward`` (+ flip)
-> ``aggregate_scales`` -> ``codec.decode`` -> ``to_original``) and keeps what it produces on the way: the
aggregated heatmaps and tag maps at network-input resolution, the resize transform, and each person's tags at
its joints. Its people are exactly ``estimator(image)``'s, whatever the estimator's precision, memory format or
folded copy.

``training_snapshot(model_or_estimator, image, target_heatmaps, layout=..., settings=...)`` turns one training image into the
pictures TensorBoard shows (``"skeletons"``, ``"heatmaps"``, ``"tags"``), each ``(H, W, 3)`` uint8 RGB for
``writer.add_image(tag, picture, step, dataformats="HWC")``.

Frames (see ``bottomup.engine.inference``): *original* pixels of the image given; *input* pixels of the network input
at scale 1 (``transform.matrix`` maps original -> input, ``transform.inverse`` back). The maps kept here have
been projected to the input size, so a map pixel is an input pixel.

Letters: N people, K keypoints, L tag dimensions (D, doubled by flip test), H x W original image, h x w input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import torch

from bottomup.core.keypoints import KeypointLayout
from bottomup.data.io import read_image
from bottomup.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ResizeTransform
from bottomup.engine.estimator import PoseEstimator
from bottomup.engine.inference import TorchBackend
from bottomup.engine.settings import TestSettings
from bottomup.vis.draw import draw_people, figure_to_array, overlay_heatmaps, tag_grid

__all__ = ["Explanation", "explain", "training_snapshot", "tag_panel_title", "SNAPSHOT_KEYS"]

#: Keys of ``training_snapshot``'s result, in display order.
SNAPSHOT_KEYS = ("skeletons", "heatmaps", "tags")


@dataclass(frozen=True)
class Explanation:
    """One image through the test-time pipeline, with its intermediate maps.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, the original image.
        input_image: ``(h, w, 3)`` uint8 RGB, the image warped to the network input at scale 1
            (``cv2.warpAffine(image, transform.matrix, transform.size)``, zero padding): the same field of view
            and resolution as the maps, so it is the background to draw them on.
        heatmaps: ``(K, h, w)`` float32, heatmaps averaged over outputs, flip and scales, projected to the input
            size (input pixels); roughly in ``[0, 1]``. With ``test.udp`` they stay at the last output's resolution
            (``transform.udp``; corners on the input's corners), the same field of view.
        tags: ``(K, h, w, L)`` float32 tag maps at the same resolution (``L = 2 D`` with flip test: plain tags
            first, then those of the mirrored image).
        transform: the scale-1 ``ResizeTransform`` (original <-> input pixels).
        keypoints: ``(N, K, 3)`` float64 ``(x, y, score)`` in original pixels (``= estimator(image).keypoints``).
        keypoints_input: ``(N, K, 3)`` float64 the same in input pixels (the frame of ``heatmaps`` / ``tags``; with
            UDP maps, ``x_map * (w - 1) / (w_map - 1)``).
        scores: ``(N,)`` float32 person scores (``= estimator(image).scores``).
        person_tags: ``(N, K, L)`` float32, ``tags[k, int(y), int(x)]`` at each found joint (score > 0, detected
            or filled by refinement) of each person, input-pixel ``(x, y)``; NaN where the joint is missing.
        detected: ``(N, K)`` bool, joints placed by tag matching (not filled by refinement); their tags are the
            ones grouping compared.
        keypoint_names: the K names, in channel order.
        skeleton: limbs as ``(a, b)`` joint indices (``KeypointLayout.skeleton_index``).
    """

    image: np.ndarray
    input_image: np.ndarray
    heatmaps: np.ndarray
    tags: np.ndarray
    transform: ResizeTransform
    keypoints: np.ndarray
    keypoints_input: np.ndarray
    scores: np.ndarray
    person_tags: np.ndarray
    detected: np.ndarray
    keypoint_names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def detected_tags(self) -> np.ndarray:
        """``(N, K, L)`` float32 ``person_tags`` at detected joints only (NaN elsewhere): the pull / push view."""
        return np.where(self.detected[..., None], self.person_tags, np.float32(np.nan)).astype(np.float32)

    def select(self, index: Sequence[int] | np.ndarray) -> Explanation:
        """The same explanation restricted to people ``index`` (in that order; maps unchanged)."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        return replace(
            self,
            keypoints=self.keypoints[idx],
            keypoints_input=self.keypoints_input[idx],
            scores=self.scores[idx],
            person_tags=self.person_tags[idx],
            detected=self.detected[idx],
        )

    def top(self, max_people: int | None = None, min_score: float = 0.0) -> Explanation:
        """People with ``score >= min_score``, best first, at most ``max_people``."""
        order = np.argsort(-self.scores, kind="stable")
        order = order[self.scores[order] >= min_score]
        return self.select(order if max_people is None else order[: int(max_people)])


def explain(estimator: PoseEstimator, image: str | os.PathLike | np.ndarray) -> Explanation:
    """Run ``estimator``'s test-time pipeline on one image and keep the intermediate maps.

    Uses ``estimator.run`` (its model, device, precision, memory format, ``input_size``, ``scales``,
    ``flip_test`` and codec), so ``keypoints`` / ``scores`` equal ``estimator(image)``'s.

    Args:
        estimator: a ``bottomup.engine.estimator.PoseEstimator`` (``bottomup.api.PoseEstimator``), any backend.
        image: image file path, or ``(H, W, 3)`` uint8 array (original frame) in ``estimator.color`` order.

    Returns:
        an :class:`Explanation` (see its attributes for shapes and frames).

    Raises:
        bottomup.data.io.ImageReadError: missing / unreadable file.
        TypeError / ValueError: an array of the wrong type, shape or dtype.
    """
    rgb = estimator.read(image)  # RGB whatever estimator.color says the array is
    out = estimator.run(image)
    k = estimator.layout.num_keypoints
    base = out.transform
    heatmaps = _numpy(out.heatmaps[0])  # (K, h, w)
    tags = _numpy(out.tags[0])  # (K, h, w, L)
    num_tags = tags.shape[-1]
    grouped = np.asarray(out.grouped, dtype=np.float32).reshape(-1, k, 3 + num_tags)
    keypoints_input = grouped[..., :3].astype(np.float64)
    if getattr(base, "udp", False):  # UDP maps are not projected: their pixels -> input pixels, corners aligned
        keypoints_input[..., 0] *= (base.size[0] - 1.0) / (heatmaps.shape[2] - 1.0)
        keypoints_input[..., 1] *= (base.size[1] - 1.0) / (heatmaps.shape[1] - 1.0)

    # Tags at each person's joints, read from the maps at the joint's pixel (grouping's pixel: int(x), int(y)).
    _, h, w = heatmaps.shape
    found = grouped[..., 2] > 0  # (N, K)
    xs = np.clip(np.floor(grouped[..., 0]).astype(np.int64), 0, w - 1)
    ys = np.clip(np.floor(grouped[..., 1]).astype(np.int64), 0, h - 1)
    joint = np.broadcast_to(np.arange(k), found.shape)
    person_tags = np.where(found[..., None], tags[joint, ys, xs], np.float32(np.nan)).astype(np.float32)
    # Detected joints carry their tag in the grouping output; refinement leaves those columns at 0.
    detected = found & np.any(grouped[..., 3:] != 0, axis=-1)

    return Explanation(
        image=rgb,
        input_image=cv2.warpAffine(rgb, base.matrix, base.size),
        heatmaps=heatmaps,
        tags=tags,
        transform=base,
        keypoints=out.keypoints,
        keypoints_input=keypoints_input,
        scores=np.asarray(out.scores, dtype=np.float32).reshape(-1),
        person_tags=person_tags,
        detected=detected,
        keypoint_names=tuple(estimator.layout.keypoint_names),
        skeleton=tuple((int(a), int(b)) for a, b in estimator.layout.skeleton_index),
    )


def _numpy(maps: Any) -> np.ndarray:
    """float32 numpy array of a backend's maps (a torch tensor on any device, or an array)."""
    if isinstance(maps, torch.Tensor):
        return maps.float().cpu().numpy()
    return np.asarray(maps, dtype=np.float32)


# ------------------------------------------------------------------------------------------- training pictures
def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    for _ in range(4):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            break
        model = inner
    return model


def _to_rgb(image: Any) -> np.ndarray:
    """Path / uint8 RGB array / ImageNet-normalised ``(3, h, w)`` tensor (a training batch entry) -> uint8 RGB."""
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"image tensor must be (3, h, w) ImageNet-normalised RGB, got shape {tuple(t.shape)}")
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        rgb = ((t * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
        return np.ascontiguousarray(rgb.permute(1, 2, 0).numpy())
    return read_image(image)


def _label(picture: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` in the top-left corner (white on a black outline)."""
    out = picture.copy()
    scale = max(0.4, picture.shape[1] / 700.0)
    org = (4, int(16 * scale / 0.5))
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def training_snapshot(
    model: PoseEstimator | torch.nn.Module,
    image: str | os.PathLike | np.ndarray | torch.Tensor,
    target_heatmaps: np.ndarray | torch.Tensor | Sequence[torch.Tensor] | None = None,
    *,
    layout: KeypointLayout | None = None,
    settings: TestSettings | None = None,
    tag_threshold: float = 0.1,
) -> dict[str, np.ndarray]:
    """The pictures TensorBoard shows during training, for one image.

    With a bare model (training), it is wrapped in a ``PoseEstimator`` with ``layout`` and ``settings`` (without
    flip test, one scale, on the model's device); DDP / ``torch.compile`` wrappers are looked through,
    and the model's train / eval mode is restored afterwards. A tensor ``image`` (one entry of a training
    batch, ImageNet-normalised, already in input pixels) is un-normalised and run with ``input_size`` = its
    short side, so the pipeline's resize is the identity and the pictures are in the crop's frame, the frame of
    the batch's target heatmaps.

    Args:
        model: a ``PoseEstimator`` (used as is), or the network ``x (1, 3, h, w) -> [outputs per stride]``
            (e.g. the training model, possibly DDP / compiled) together with ``layout``.
        image: ``(3, h, w)`` float tensor (ImageNet-normalised, e.g. ``batch["image"][0]``), ``(H, W, 3)``
            uint8 RGB array, or image path.
        target_heatmaps: ground-truth heatmaps ``(K, h', w')`` (array or tensor, any resolution covering the
            same field of view as ``image``, e.g. ``batch["heatmaps"][-1][0]``), or the per-stride list (the
            last, highest-resolution entry is used; a leading batch dimension of 1 is dropped), or ``None``.
        layout: the keypoint layout; required with a bare model.
        settings: the test-time settings for a bare model (default ``TestSettings()``); the network's memory
            format is left as it is (``TorchBackend(follow=True)``). For repeated pictures of a training network,
            pass an estimator on a ``follow`` backend and ``refresh()`` it instead: no copy each time.
        tag_threshold: tag pixels where the joint's heatmap is ``<=`` this are masked (black) in ``"tags"``.

    Returns:
        ``{"skeletons", "heatmaps", "tags"}`` (``SNAPSHOT_KEYS``), each ``(H, W, 3)`` uint8 RGB (sizes differ):

        * ``"skeletons"``: the image with the grouped people (``draw_people``, one colour per person, scores);
        * ``"heatmaps"``: predicted heatmaps (max over joints) over the network input, next to the target's
          when given (``overlay_heatmaps``), labelled "predicted" / "target";
        * ``"tags"``: per-joint tag maps (first tag dimension) masked where the heatmap is low (``tag_grid``
          rendered with ``figure_to_array``).

    Raises:
        ValueError: a bare model without ``layout``, or bad image / target shapes.
    """
    rgb = _to_rgb(image)
    is_crop = isinstance(image, torch.Tensor)
    net = None
    was_training = False
    if isinstance(model, PoseEstimator):
        estimator = model
        if is_crop:
            estimator = estimator.with_settings(input_size=min(rgb.shape[:2]))
    else:
        if layout is None:
            raise ValueError(
                "training_snapshot: give layout= (the keypoint layout) with a bare model, or a PoseEstimator"
            )
        net = _unwrap(model)
        was_training = net.training
        param = next(iter(net.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        changes: dict[str, Any] = {"flip_test": False, "scales": [1.0]}
        if is_crop:
            changes["input_size"] = min(rgb.shape[:2])
        backend = TorchBackend(net, (settings or TestSettings()).replace(**changes), device=device, follow=True)
        estimator = PoseEstimator(backend, layout=layout)  # puts net in eval mode; its memory format is kept
    try:
        ex = explain(estimator, rgb)
    finally:
        if net is not None:
            net.train(was_training)

    pictures: dict[str, np.ndarray] = {}
    pictures["skeletons"] = draw_people(ex.image, ex.keypoints, ex.skeleton, scores=ex.scores)

    panels = [_label(overlay_heatmaps(ex.input_image, ex.heatmaps), "predicted")]
    if target_heatmaps is not None:
        target = target_heatmaps
        if isinstance(target, (list, tuple)):
            target = target[-1]
        if isinstance(target, torch.Tensor):
            target = target.detach().float().cpu().numpy()
        target = np.asarray(target, dtype=np.float32)
        if target.ndim == 4 and target.shape[0] == 1:
            target = target[0]
        if target.ndim != 3 or target.shape[0] != ex.heatmaps.shape[0]:
            raise ValueError(
                f"target_heatmaps must be (K, h, w) with K={ex.heatmaps.shape[0]}, got shape {target.shape}"
            )
        gap = np.full((ex.input_image.shape[0], 4, 3), 255, np.uint8)
        panels += [gap, _label(overlay_heatmaps(ex.input_image, target), "target")]
    pictures["heatmaps"] = np.ascontiguousarray(np.concatenate(panels, axis=1))

    fig = tag_grid(
        ex.tags[..., 0],
        ex.keypoint_names,
        ex.heatmaps,
        threshold=tag_threshold,
        panel_size=1.6,
        title=tag_panel_title(ex.heatmaps, tag_threshold),
    )
    pictures["tags"] = figure_to_array(fig)
    return pictures


def tag_panel_title(heatmaps: np.ndarray, threshold: float) -> str:
    """Title of the tag-map panels: what the mask is, and why every panel is black while no joint's heatmap
    passes ``threshold`` yet (early in training).

    Args:
        heatmaps: ``(K, H, W)`` predicted heatmaps. threshold: the mask's heatmap threshold.
    """
    title = f"tag maps (masked where heatmap <= {threshold:.2f})"
    peak = float(np.max(heatmaps)) if np.size(heatmaps) else 0.0
    if not peak > threshold:
        title += f"\nall black: no heatmap value above {threshold:.2f} yet (max {peak:.3f}), normal early in training"
    return title

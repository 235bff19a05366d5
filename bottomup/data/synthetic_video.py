"""A synthetic video of walking, crossing and occluding figures with ground-truth identities, for tracking tests.

The figures are the quickstart's (:mod:`bottomup.data.synthetic`: same pose model, colours and drawing). Each of
``num_people`` figures keeps one sampled pose and walks left / right across a fixed background at its own speed
and height, turning back at the frame's edges (so figures cross each other again and again over a long video),
with a small vertical bob. Figures are drawn in a fixed depth order: a later one hides an earlier one where they
overlap, so people are partly or fully occluded while crossing. Everything is deterministic from ``seed``; any
frame can be rendered alone (:meth:`SyntheticVideo.frame`), so a stream of any length uses flat memory.

Ground truth per frame: the ids (``1..num_people``) of the people with at least one visible pixel, their keypoints
``(G, 17, 3)`` with the COCO visibility of :mod:`bottomup.data.synthetic` (2 visible, 1 hidden by a figure in front
or turned away, 0 outside the frame; then x = y = 0) and their visible areas (pixels, as COCO's segment area).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bottomup.data.synthetic import (
    COCO_KEYPOINT_NAMES,
    _background,
    _draw_figure,
    _Figure,
    _noise,
    _Painter,
    _sample_figure,
)

__all__ = ["SyntheticVideo", "SyntheticVideoFrame", "write_synthetic_video"]

K = len(COCO_KEYPOINT_NAMES)


@dataclass(frozen=True)
class SyntheticVideoFrame:
    """One frame of a :class:`SyntheticVideo`.

    Attributes:
        index: frame number, 0-based.
        image: ``(H, W, 3)`` uint8 BGR.
        ids: ``(G,)`` int64 ground-truth identities (1-based) of the people with a visible pixel.
        keypoints: ``(G, 17, 3)`` float64 x, y (frame pixels, COCO frame), visibility 0 / 1 / 2.
        areas: ``(G,)`` float64 visible pixels of each person.
    """

    index: int
    image: np.ndarray
    ids: np.ndarray
    keypoints: np.ndarray
    areas: np.ndarray


class SyntheticVideo:
    """Walking figures with ground-truth ids (module docstring); iterate for :class:`SyntheticVideoFrame`.

    Args:
        seed: all randomness (figures, paths, background, pixel noise) comes from it.
        num_frames: frames of the video.
        width, height: frame size, pixels.
        num_people: figures.
        fps: frame rate, frames per second (walking speeds are per second: 0.15-0.35 of the width).
        min_height, max_height: figure heights as fractions of the frame height.

    Raises:
        ValueError: non-positive sizes or counts.
    """

    def __init__(
        self,
        seed: int = 0,
        num_frames: int = 60,
        width: int = 320,
        height: int = 240,
        num_people: int = 3,
        fps: float = 25.0,
        min_height: float = 0.5,
        max_height: float = 0.8,
    ) -> None:
        if min(num_frames, width, height, num_people) < 1 or not fps > 0:
            raise ValueError(
                f"num_frames, width, height, num_people must be >= 1 and fps > 0, got {num_frames}, {width}, "
                f"{height}, {num_people}, {fps}"
            )
        self.seed, self.num_frames, self.fps = int(seed), int(num_frames), float(fps)
        self.width, self.height, self.num_people = int(width), int(height), int(num_people)
        rng = np.random.default_rng([self.seed, 1])
        self.background = _background(rng, max(self.width, self.height))[: self.height, : self.width].copy()
        self._figures: list[_Figure] = []
        self._paths: list[tuple[float, float, float, float, float, float]] = []
        for i in range(self.num_people):
            h = rng.uniform(min_height, max_height) * self.height
            self._figures.append(_sample_figure(rng, h, np.zeros(2), rng.normal(0, 0.05)))
            # pelvis path: x bounces between margins; y = base + bob
            margin = 0.12 * self.width
            x0 = rng.uniform(margin, self.width - margin)
            speed = rng.uniform(0.15, 0.35) * self.width / self.fps * (1 if i % 2 == 0 else -1)
            foot = 0.55 * h  # pelvis above the feet
            y = rng.uniform(max(0.42 * h, self.height * 0.45), max(0.42 * h + 1, self.height - foot))
            self._paths.append((x0, speed, margin, y, rng.uniform(0.005, 0.015) * h, rng.uniform(0.6, 1.4)))

    def __len__(self) -> int:
        return self.num_frames

    def pelvis(self, person: int, index: int) -> np.ndarray:
        """``(2,)`` pelvis position of figure ``person`` (0-based) in frame ``index``, pixels."""
        x0, speed, margin, y, bob, period = self._paths[person]
        span = self.width - 2 * margin
        u = (x0 - margin + speed * index) % (2 * span)
        x = margin + (u if u <= span else 2 * span - u)
        t = index / self.fps
        return np.array([x, y + bob * np.sin(2 * np.pi * t / (0.5 * period))])

    def frame(self, index: int) -> SyntheticVideoFrame:
        """Render frame ``index`` (0-based) with its ground truth.

        Raises:
            IndexError: ``index`` outside ``[0, num_frames)``.
        """
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} outside [0, {self.num_frames})")
        paint = _Painter(self.background.copy(), np.zeros((self.height, self.width), np.uint8))
        placed = []
        for i, fig in enumerate(self._figures):
            shift = self.pelvis(i, index)
            moved = dataclasses.replace(
                fig, joints=fig.joints + shift, neck=fig.neck + shift, head_center=fig.head_center + shift
            )
            _draw_figure(paint, moved, i + 1)
            placed.append(moved)
        rng = np.random.default_rng([self.seed, 2, index])
        image = np.clip(paint.image + _noise(rng, 4, paint.image.shape), 0, 255).astype(np.uint8)
        owner = paint.owner
        ids, kpts, areas = [], [], []
        w, h = self.width, self.height
        for i, fig in enumerate(placed):
            area = float((owner == i + 1).sum())
            if area == 0:
                continue
            xy = fig.joints
            inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
            xi = np.clip(xy[:, 0].astype(int), 0, w - 1)
            yi = np.clip(xy[:, 1].astype(int), 0, h - 1)
            shown = (owner[yi, xi] == i + 1) & ~fig.hidden
            k = np.zeros((K, 3))
            k[:, :2] = np.where(inside[:, None], xy, 0.0)
            k[:, 2] = np.where(inside, np.where(shown, 2, 1), 0)
            ids.append(i + 1)
            kpts.append(k)
            areas.append(area)
        return SyntheticVideoFrame(
            index=index,
            image=image,
            ids=np.asarray(ids, np.int64),
            keypoints=np.asarray(kpts, np.float64).reshape(-1, K, 3),
            areas=np.asarray(areas, np.float64),
        )

    def __iter__(self) -> Iterator[SyntheticVideoFrame]:
        return (self.frame(i) for i in range(self.num_frames))


def write_synthetic_video(path: str | os.PathLike, video: SyntheticVideo) -> list[SyntheticVideoFrame]:
    """Write ``video`` as an MP4 (``bottomup.data.video.VideoWriter``) and return its frames' ground truth
    (:class:`SyntheticVideoFrame` with ``image`` dropped to an empty array, so memory stays small).

    Raises:
        bottomup.data.video.VideoReadError: the file cannot be written.
    """
    from bottomup.data.video import VideoWriter

    truth = []
    with VideoWriter(Path(path), video.fps, (video.width, video.height)) as writer:
        for f in video:
            writer.write(f.image)
            truth.append(dataclasses.replace(f, image=np.empty((0, 0, 3), np.uint8)))
    return truth

"""People found in one image: :class:`Prediction` (a sequence of :class:`Person`), boxes and COCO results.

Plain numpy (no torch), so that the torch path (``bottomup.engine.inference.TorchBackend``) and the exported runtimes
(``bottomup.deploy.runtime``) return the same objects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PipelineOutput", "Person", "Prediction", "keypoint_boxes", "people_to_results"]


def people_to_results(
    image_id: int | None, keypoints: np.ndarray, scores: np.ndarray, *, category_id: int = 1
) -> list[dict]:
    """One image's people as COCO keypoint results.

    Args:
        image_id: the image's COCO id, or ``None`` to leave the key out (images outside a data set).
        keypoints: ``(N, K, >=3)`` x, y (original-image pixels), score.
        scores: ``(N,)`` person scores.
        category_id: the data set's keypoint category id (``categories[0]["id"]`` of its annotation file).

    Returns:
        ``N`` dicts ``{"image_id"?, "category_id", "keypoints": flat [x, y, score] * K, "score"}`` of plain
        Python floats (JSON-serialisable).

    Raises:
        ValueError: shapes that are not ``(N, K, >=3)`` and ``(N,)``.
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if kpts.ndim != 3 or kpts.shape[2] < 3 or kpts.shape[0] != scores.shape[0]:
        raise ValueError(f"keypoints must be (N, K, 3) and scores (N,), got {kpts.shape} and {scores.shape}")
    out = []
    for p in range(kpts.shape[0]):
        r: dict[str, Any] = {} if image_id is None else {"image_id": int(image_id)}
        r["category_id"] = int(category_id)
        r["keypoints"] = [round(float(v), 3) for v in kpts[p, :, :3].reshape(-1)]
        r["score"] = float(scores[p])
        out.append(r)
    return out


def keypoint_boxes(keypoints: np.ndarray, min_score: float = 0.0) -> np.ndarray:
    """Tight boxes around each person's keypoints with ``score > min_score``.

    Args:
        keypoints: ``(N, K, >=3)`` x, y, score in any pixel frame.
        min_score: joints at or below it are left out (0: every detected joint).

    Returns:
        ``(N, 4)`` float64 ``x0, y0, x1, y1`` in the same frame; NaN for a person with no such joint.
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    boxes = np.full((kpts.shape[0], 4), np.nan)
    for n, person in enumerate(kpts):
        xy = person[(person[:, 2] > min_score) & np.isfinite(person[:, :2]).all(-1), :2]
        if len(xy):
            boxes[n] = [*xy.min(0), *xy.max(0)]
    return boxes


@dataclass(frozen=True)
class PipelineOutput:
    """One image through the whole test-time pipeline, on any backend (``PoseEstimator.run``).

    Arrays are the backend's own: torch tensors (on the network's device) from the torch backend, numpy arrays from
    ONNX Runtime / OpenVINO; ``keypoints`` / ``scores`` / ``grouped`` are numpy arrays everywhere.

    Attributes:
        heatmaps: ``(1, K, h, w)`` float32, averaged over outputs, flip and scales, projected to the input size at
            scale 1 (input pixels); with ``test.udp`` at the last output of the largest scale (its pixels, corners
            on the input's corners; ``transform.udp``).
        tags: ``(1, K, h, w, L)`` float32 at the same resolution (``L = 2 D`` with flip test); may be a strided view.
        transform: the scale-1 ``ResizeTransform`` (original <-> input pixels).
        grouped: ``(N, K, 3 + L)`` float32 grouping output in pixels of ``heatmaps`` (input pixels without UDP):
            ``x, y, score``, then the tag at the detection (0 for joints filled by refinement or missing).
        keypoints: ``(N, K, 3)`` float64 ``x, y, score`` in original-image pixels.
        scores: ``(N,)`` float32 person scores.
    """

    heatmaps: Any
    tags: Any
    transform: Any
    grouped: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class Person:
    """One person of a :class:`Prediction` (``prediction[i]``, or iterating over it).

    Attributes:
        keypoints: ``(K, 3)`` float64 x, y (original-image pixels), keypoint score.
        score: the person score (mean keypoint score, official).
        box: ``(4,)`` ``x0, y0, x1, y1`` around the detected joints, original-image pixels.
        keypoint_names: the K names, in channel order.
    """

    keypoints: np.ndarray
    score: float
    box: np.ndarray
    keypoint_names: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> np.ndarray:
        """``person["left_wrist"]``: that joint's ``(3,)`` x, y, score.

        Raises:
            KeyError: a name not in :attr:`keypoint_names` (the message lists them).
        """
        if name not in self.keypoint_names:
            raise KeyError(f"no keypoint {name!r}; the keypoints are {list(self.keypoint_names)}")
        return self.keypoints[self.keypoint_names.index(name)]


@dataclass(frozen=True)
class Prediction:
    """People found in one image: a sequence of :class:`Person` with array access to all of them.

    ``len(pred)`` people; ``pred[i]`` is a :class:`Person`; ``pred[pred.scores > 0.3]`` or ``pred[:5]`` (a
    boolean mask, index array or slice) is a new ``Prediction``; ``for person in pred`` iterates. People come
    sorted by score, highest first. :meth:`plot` / :meth:`save` draw them (``bottomup.vis.draw``, loaded on first
    use, so the torch-free runtime returns this class too); :meth:`to_coco` / :meth:`to_json` export them.

    Attributes:
        keypoints: ``(N, K, 3)`` float64: ``x, y`` in original-image pixels, keypoint score (heatmap value;
            0 for a joint that was neither detected nor refined).
        scores: ``(N,)`` float32 person scores (mean keypoint score before refinement, official).
        keypoint_names: the K names, in channel order.
        skeleton: limbs as 0-based ``(a, b)`` keypoint indices (for drawing).
        image: the ``(H, W, 3)`` uint8 RGB image the people were found in, or ``None``.
        category_id: the keypoint category's id in the model's data set (``data.category_id``), written by
            :meth:`to_coco`.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    keypoint_names: tuple[str, ...] = field(default=())
    skeleton: tuple[tuple[int, int], ...] = field(default=())
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    category_id: int = 1

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __iter__(self) -> Iterator[Person]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: Any) -> Any:
        """An int gives a :class:`Person`; a slice, boolean mask or index array a ``Prediction`` of those people.

        Raises:
            IndexError: an int outside ``[-N, N)``.
        """
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= int(index) < n:
                raise IndexError(f"person index {int(index)} out of range: this prediction has {n} people")
            kpts = self.keypoints[int(index)]
            return Person(kpts, float(self.scores[int(index)]), keypoint_boxes(kpts[None])[0], self.keypoint_names)
        return type(self)(
            keypoints=self.keypoints[index],
            scores=self.scores[index],
            keypoint_names=self.keypoint_names,
            skeleton=self.skeleton,
            image=self.image,
            category_id=self.category_id,
        )

    @property
    def boxes(self) -> np.ndarray:
        """``(N, 4)`` float64 ``x0, y0, x1, y1`` around each person's detected joints (score > 0),
        original-image pixels (:func:`keypoint_boxes`)."""
        return keypoint_boxes(self.keypoints)

    def to_coco(self, image_id: int | None = None, category_id: int | None = None) -> list[dict]:
        """COCO keypoint results (:func:`people_to_results`), each with its ``bbox`` ``[x, y, w, h]``.

        Args:
            image_id: the image's id in a COCO annotation file, or ``None`` to leave the key out.
            category_id: the keypoint category's id in that file; ``None``: :attr:`category_id`, the model's data
                set's.
        """
        category = self.category_id if category_id is None else category_id
        results = people_to_results(image_id, self.keypoints, self.scores, category_id=category)
        for r, (x0, y0, x1, y1) in zip(results, self.boxes, strict=True):
            if np.isfinite(x0):
                r["bbox"] = [
                    round(float(x0), 3),
                    round(float(y0), 3),
                    round(float(x1 - x0), 3),
                    round(float(y1 - y0), 3),
                ]
        return results

    def to_json(self, path: str | os.PathLike | None = None, **coco: Any) -> str:
        """:meth:`to_coco` as a JSON string; written to ``path`` too when given (``coco``: its arguments)."""
        import json

        results = self.to_coco(**coco)
        if path is not None:
            from bottomup.core.io import write_json

            write_json(path, results)  # atomic: a kill never leaves half a file
        return json.dumps(results)

    def plot(
        self,
        image: np.ndarray | None = None,
        *,
        min_score: float | None = None,
        joint_threshold: float | None = None,
        min_side: int | None = None,
        radius: int | None = None,
        thickness: int | None = None,
        labels: bool = True,
        colors: Sequence[tuple[int, int, int]] | None = None,
        texts: Sequence[str] | None = None,
    ) -> np.ndarray:
        """The people drawn on the image (``bottomup.vis.draw_people``), one colour per person.

        Args:
            image: ``(H, W, 3)`` uint8 RGB in the frame of the keypoints; default: the image the people were
                found in.
            min_score: people with a lower person score are not drawn (default
                ``bottomup.vis.draw.PLOT_DEFAULTS["min_score"]``, as the other two).
            joint_threshold: joints with a score at or below it are not drawn (nor their limbs).
            min_side: a picture whose longer side is shorter is upscaled (bilinear) to it before drawing.
            radius, thickness: joint radius and limb width in pixels of the picture (default: from its size).
            labels: write each person's score (or its entry of ``texts``) above it.
            colors: ``(N,)`` RGB colours, one per person of this prediction (default: ``person_colors``).
            texts: ``(N,)`` labels written instead of the scores (e.g. track ids).

        Returns:
            ``(H', W', 3)`` uint8 RGB, ``H' = H`` unless upscaled.

        Raises:
            ValueError: no image (the prediction holds none and none given) or one of another shape.
        """
        import cv2  # drawing is loaded on first use: the torch-free runtime returns this class too

        from bottomup.vis.draw import PLOT_DEFAULTS, draw_people

        min_score = PLOT_DEFAULTS["min_score"] if min_score is None else min_score
        joint_threshold = PLOT_DEFAULTS["joint_threshold"] if joint_threshold is None else joint_threshold
        min_side = int(PLOT_DEFAULTS["min_side"]) if min_side is None else min_side
        picture = self.image if image is None else image
        if picture is None:
            raise ValueError("this Prediction holds no image: pass plot(image=...) (H, W, 3) uint8 RGB")
        keep = self.scores >= min_score
        kept = np.flatnonzero(keep)
        kpts = np.asarray(self.keypoints[keep], dtype=np.float64).copy()
        h, w = picture.shape[:2]
        factor = max(1.0, float(min_side) / max(h, w))
        if factor > 1.0:
            picture = cv2.resize(picture, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_LINEAR)
            kpts[..., :2] = (kpts[..., :2] + 0.5) * factor - 0.5  # pixel centres stay on the same content
        return draw_people(
            picture,
            kpts,
            self.skeleton,
            scores=self.scores[keep] if labels else None,
            threshold=joint_threshold,
            radius=radius,
            thickness=thickness,
            colors=None if colors is None or not len(kept) else [colors[i] for i in kept],
            labels=None if texts is None or not labels else [texts[i] for i in kept],
        )

    def save(self, path: str | os.PathLike, image: np.ndarray | None = None, **plot: Any) -> Path:
        """Write :meth:`plot` to ``path`` (PNG / JPEG by its suffix); ``plot``: its keyword arguments.

        Raises:
            ValueError: as :meth:`plot`. OSError: the file could not be written (the message names it).
        """
        import cv2

        path = Path(path)
        picture = self.plot(image, **plot)
        if not cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path} (is the folder there and the suffix .png / .jpg?)")
        return path

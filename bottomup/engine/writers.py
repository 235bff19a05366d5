"""What inference writes: COCO results and pictures for images, JSON lines and a rendered video per video source.

``python -m bottomup.infer`` parses its command line and hands each input to these writers; they take plain
objects (an estimator, a frame source, a drawing style) and know nothing of the command line.

Files (all in one output folder, named uniquely within a run by :class:`OutputNames`):

* :class:`ImageResults`: ``results.json`` (COCO keypoint results, one dict per person, ``file_name`` added, in
  original-image pixels) and ``<image stem>.png`` per image.
* :class:`VideoOutput`: ``<name>.jsonl`` (one line per processed frame, flushed as it is written) and
  ``<name>.mp4`` (the frames with each track drawn), both in frame pixels.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bottomup.core.io import write_json

__all__ = ["OutputNames", "ImageResults", "image_id", "deferred_interrupt", "VideoOutput", "VideoInterrupted"]


def image_id(path: Path) -> int | None:
    """The COCO / CrowdPose image id of a file whose stem is all digits (``000000000785.jpg`` -> 785), else
    ``None``."""
    return int(path.stem) if path.stem.isdigit() else None


class OutputNames:
    """Unique file names within one output folder for one run: a second input with the same stem gets
    ``<stem>_2``, ``<stem>_3``, ...

    Args:
        out_dir: the output folder.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self._used: set[str] = set()

    def reserve(self, stem: str, suffixes: Sequence[str]) -> Path:
        """``out_dir/<name>`` (no suffix) such that no ``<name><suffix>`` was handed out before in this run."""
        name, i = stem, 1
        while any(f"{name}{s}" in self._used for s in suffixes):
            i += 1
            name = f"{stem}_{i}"
        self._used.update(f"{name}{s}" for s in suffixes)
        return self.out_dir / name


class ImageResults:
    """The results of a run over images: COCO results collected per image, a picture per image.

    Args:
        names: the run's unique names in the output folder.
        min_score: people below this score are left out (of the results and the pictures).
        style: drawing settings of ``Prediction.save`` (``min_score``, ``joint_threshold``, ``min_side``, ...);
            ``None``: no pictures.
    """

    def __init__(self, names: OutputNames, *, min_score: float, style: dict[str, Any] | None) -> None:
        self.names, self.min_score, self.style = names, float(min_score), style
        self.results: list[dict[str, Any]] = []
        self.people = 0

    def add(self, path: Path, prediction: Any) -> None:
        """Keep the people of ``prediction`` (of the image at ``path``) and draw them into ``<stem>.png``.

        Raises:
            OSError: the picture cannot be written (the results are kept).
        """
        kept = prediction[prediction.scores >= self.min_score]
        self.people += len(kept)
        for r in kept.to_coco(image_id(path)):
            self.results.append({"file_name": path.name, **r})
        if self.style is not None:
            png = self.names.reserve(path.stem, (".png",)).with_suffix(".png")
            kept.save(png, **self.style)

    def close(self) -> Path:
        """Write ``results.json`` (atomically) and return its path."""
        return write_json(self.names.out_dir / "results.json", self.results)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[list[int]]:
    """While inside: the first Ctrl-C (SIGINT) only appends to the yielded list (the loop ends after the frame it
    is on); a second one interrupts at once. Outside the main thread nothing changes."""
    stop: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        stop.append(signum)
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class VideoInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`VideoOutput.write`: the lines and frames written so far are kept (the mp4 finalised)."""


class VideoOutput:
    """The files of one tracked video: a line of ``jsonl`` per frame (flushed, so that a kill keeps every finished
    line) and, with ``mp4``, the frame drawn (``FrameResult.plot(**style)``) into a video.

    Args:
        jsonl: the JSON-lines file.
        mp4: the rendered video, or ``None``.
        fps: its frame rate (frames per second of the processed frames).
        size: its ``(width, height)`` in pixels.
        style: drawing settings.

    Attributes:
        frames, people: written so far (also after an error).
    """

    def __init__(
        self, jsonl: Path, mp4: Path | None, *, fps: float, size: tuple[int, int], style: dict[str, Any]
    ) -> None:
        self.jsonl, self.mp4, self.fps, self.size, self.style = jsonl, mp4, fps, size, style
        self.frames = self.people = 0

    def write(self, results: Iterable[Any], stop: list[int], on_frame: Callable[[], None] | None = None) -> None:
        """Write ``results`` (``FrameResult`` per frame, ``PoseEstimator.track``) frame by frame.

        Args:
            results: the frames' results.
            stop: non-empty once Ctrl-C came (:func:`deferred_interrupt`): the loop ends after a whole frame, so
                that the jsonl and the mp4 agree.
            on_frame: called after each frame (a progress bar).

        Raises:
            VideoInterrupted: ``stop`` became non-empty, or a second Ctrl-C (the files are closed and kept).
            Exception: what reading or processing a frame raised (the files are closed and kept).
        """
        import cv2

        from bottomup.data.video import VideoWriter

        writer: VideoWriter | None = None
        try:
            with self.jsonl.open("w", encoding="utf-8") as lines:
                if self.mp4 is not None:
                    writer = VideoWriter(self.mp4, self.fps, self.size)
                for result in results:
                    if stop:
                        raise VideoInterrupted
                    lines.write(json.dumps(result.to_dict()) + "\n")
                    lines.flush()
                    if writer is not None:
                        writer.write(cv2.cvtColor(result.plot(**self.style), cv2.COLOR_RGB2BGR))
                    self.frames += 1
                    self.people += len(result.prediction)
                    if on_frame is not None:
                        on_frame()
                    if stop:
                        raise VideoInterrupted
        except VideoInterrupted:
            raise
        except KeyboardInterrupt as e:
            raise VideoInterrupted from e
        finally:
            if writer is not None:
                writer.close()

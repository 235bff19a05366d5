"""Frame sources (video files, cameras, streams, image folders) and the rendered-video writer.

Frames are read one at a time (OpenCV's ``cv2.VideoCapture``, or ``cv2.imread`` per file of an image folder), so
memory stays flat over a stream of any length. Frames are ``(H, W, 3)`` uint8 **BGR**, as OpenCV gives them.

What a source string means (:func:`open_source`):

* an integer string (``"0"``, ``"1"``) or an int: the camera of that index;
* a URL (``rtsp://``, ``rtmp://``, ``http://``, ``https://``, ``udp://``, ``tcp://``...): a stream, opened by OpenCV's FFmpeg back end;
* a folder with ``sequence=True``: its image files sorted by name, as the frames of a video at ``fps``;
* a file: a video (any container OpenCV's FFmpeg reads: ``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ...).

Nothing ends without a word: a video file that ends before the frame count its container reports (cut short or
damaged) is read to where it breaks, and then a :class:`TruncatedVideoWarning` names the file and both counts; an
image of a sequence whose size differs from the first image's fails with :class:`VideoReadError` naming both files
and sizes (a video has one frame size).
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bottomup.data.io import IMAGE_EXTENSIONS

__all__ = [
    "VIDEO_EXTENSIONS",
    "Frame",
    "TruncatedVideoWarning",
    "VideoReadError",
    "VideoSource",
    "VideoWriter",
    "is_stream_url",
    "is_video_source",
    "open_source",
    "source_name",
]

#: Suffixes treated as videos by ``python -m bottomup.infer`` (a file named explicitly is tried as a video when its
#: suffix is here; any suffix OpenCV's FFmpeg back end can demux works through :func:`open_source`).
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".wmv", ".flv", ".mpg", ".mpeg", ".ts", ".mts", ".3gp", ".ogv"}
)
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class VideoReadError(OSError):
    """A video source that cannot be opened or read (the message names it and says what to check)."""


class TruncatedVideoWarning(UserWarning):
    """A video file ended before the number of frames its container reports (cut short, or damaged there)."""


def is_stream_url(source: str) -> bool:
    """Whether ``source`` looks like a URL (``scheme://...``: rtsp, http, https, udp, ...)."""
    return bool(_URL.match(source))


def is_video_source(source: str | os.PathLike | int, sequence: bool = False) -> bool:
    """Whether ``source`` is read as a video (camera index, URL, video file, or a folder when ``sequence``)."""
    if isinstance(source, int):
        return True
    text = os.fspath(source)
    if text.isdigit() or is_stream_url(text):
        return True
    path = Path(text)
    if sequence and path.is_dir():
        return True
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.is_dir()


def source_name(source: str | os.PathLike | int, sequence: bool = False) -> str:
    """A file-name stem for the outputs of a source: ``clip`` for ``clip.mp4``, ``camera0`` for ``0``, a stream
    URL's last path part (else its host), an image folder's name (``sequence``)."""
    text = str(source) if isinstance(source, int) else os.fspath(source)
    if text.isdigit():
        return f"camera{int(text)}"
    if is_stream_url(text):
        return _url_name(text)
    if sequence and Path(text).is_dir():
        return Path(text).resolve().name or "sequence"
    return Path(text).stem


@dataclass(frozen=True)
class Frame:
    """One frame of a source.

    Attributes:
        index: the frame's number in the source, 0-based (with ``stride`` the numbers skip).
        time_s: its time, seconds from the start (``index / fps`` for files and sequences; wall-clock time since
            the first frame for cameras and streams).
        image: ``(H, W, 3)`` uint8 BGR.
    """

    index: int
    time_s: float
    image: np.ndarray


class VideoSource:
    """Frames of a video file, camera, stream or image folder, read one at a time.

    Iterating yields :class:`Frame` (every ``stride``-th frame, at most ``max_frames`` of them); skipped frames
    are grabbed without decoding. Use as a context manager (or call :meth:`close`) to release the device / file.

    Args:
        source: see the module docstring; built by :func:`open_source`.
        sequence: read a folder as the frames of a video.
        fps: frame rate of an image sequence (and of a source that reports none), frames per second.
        stride: process every ``stride``-th frame (1 = all).
        max_frames: stop after this many processed frames (``None``: to the end).

    Attributes:
        name: a file-name stem for the outputs (``clip`` for ``clip.mp4``, ``camera0``, the URL's last part).
        fps: frames per second of the source (``fps`` when it reports none).
        size: ``(width, height)`` pixels.
        total: number of frames that iteration will yield, or ``None`` when unknown (cameras, streams).
        live: a camera or stream (times are wall-clock).

    Raises:
        VideoReadError: a source that cannot be opened, an empty image folder, or no first frame.
        ValueError: ``stride`` < 1, ``max_frames`` < 1 or ``fps`` <= 0.
    """

    def __init__(
        self,
        source: str | os.PathLike | int,
        *,
        sequence: bool = False,
        fps: float = 30.0,
        stride: int = 1,
        max_frames: int | None = None,
    ) -> None:
        if int(stride) < 1:
            raise ValueError(f"stride must be >= 1 (every n-th frame), got {stride}")
        if max_frames is not None and int(max_frames) < 1:
            raise ValueError(f"max_frames must be >= 1 (or None for all), got {max_frames}")
        if not float(fps) > 0:
            raise ValueError(f"fps must be > 0 frames per second, got {fps}")
        self.stride, self.max_frames = int(stride), None if max_frames is None else int(max_frames)
        self.source = source
        self._cap: cv2.VideoCapture | None = None
        self._files: list[Path] | None = None
        self._first: np.ndarray | None = None
        self._reported = 0  # frames the container says it holds (files; 0: unknown)
        self._consumed = 0  # frames read or grabbed from the capture so far
        text = str(source) if isinstance(source, int) else os.fspath(source)
        self.live = text.isdigit() or is_stream_url(text)
        self.name = source_name(text, sequence)
        if sequence and Path(text).is_dir():
            self._files = sorted(
                p for p in Path(text).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not self._files:
                raise VideoReadError(f"{text}: no image files in this folder (extensions {sorted(IMAGE_EXTENSIONS)})")
            self.fps = float(fps)
            self._first = cv2.imread(str(self._files[0]), cv2.IMREAD_COLOR)
            if self._first is None:
                raise VideoReadError(f"{self._files[0]}: cannot read the first image of the sequence {text}")
            count: int | None = len(self._files)
        else:
            if text.isdigit():
                self._cap = cv2.VideoCapture(int(text))
                what = f"camera {text}"
                hint = "is a camera attached at that index, and may this process use it?"
            elif is_stream_url(text):
                self._cap = cv2.VideoCapture(text)
                what = f"stream {text}"
                hint = "is the URL reachable and the stream playing?"
            else:
                if not Path(text).is_file():
                    raise VideoReadError(f"{text}: no such file")
                self._cap = cv2.VideoCapture(text)
                what = text
                hint = "is it a video file OpenCV's FFmpeg can decode? (ffprobe says what it holds)"
            if not self._cap.isOpened():
                self._cap.release()
                raise VideoReadError(f"{what}: cannot open it as a video ({hint})")
            ok, first = self._cap.read()
            if not ok or first is None:
                self._cap.release()
                raise VideoReadError(f"{what}: opened, but no frame could be read ({hint})")
            self._first, self._consumed = first, 1
            reported = self._cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(reported) if np.isfinite(reported) and 0 < reported < 1000 else float(fps)
            frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            count = None if self.live or frames <= 0 else frames
            self._reported = count or 0
        h, w = self._first.shape[:2]
        self.size = (int(w), int(h))
        self.total = None if count is None else -(-count // self.stride)
        if self.total is not None and self.max_frames is not None:
            self.total = min(self.total, self.max_frames)

    def __iter__(self) -> Iterator[Frame]:
        """Yield the frames; a video file that ends before its reported frame count warns
        (:class:`TruncatedVideoWarning`, once, naming the file and both counts) when the frames run out.

        Raises:
            VideoReadError: an image of a sequence cannot be read, or its size is not the first image's.
        """
        done = 0
        t0 = time.monotonic()
        index = 0
        while self.max_frames is None or done < self.max_frames:
            image = self._read(index)
            if image is None:
                self._warn_if_short()
                return
            t = time.monotonic() - t0 if self.live else index / self.fps
            yield Frame(index, float(t), image)
            done += 1
            index += self.stride
            if not self._skip(self.stride - 1, index):
                self._warn_if_short()
                return

    def _warn_if_short(self) -> None:
        """Warn when a file ended before the frame count its container reports (cut short or damaged)."""
        if self._reported and self._consumed < self._reported:
            warnings.warn(
                f"{self.source}: the file says it holds {self._reported} frames, but only {self._consumed} could be "
                "read (cut short or damaged there); the frames after that are missing",
                TruncatedVideoWarning,
                stacklevel=3,
            )
            self._reported = 0  # once

    def _read(self, index: int) -> np.ndarray | None:
        if self._first is not None:
            image, self._first = self._first, None
            return image
        if self._files is not None:
            if index >= len(self._files):
                return None
            image = cv2.imread(str(self._files[index]), cv2.IMREAD_COLOR)
            if image is None:
                raise VideoReadError(f"{self._files[index]}: cannot read this image of the sequence")
            if (image.shape[1], image.shape[0]) != self.size:
                raise VideoReadError(
                    f"{self._files[index]}: {image.shape[1]}x{image.shape[0]} pixels, but the sequence's first image "
                    f"{self._files[0]} is {self.size[0]}x{self.size[1]}; the frames of a video share one size "
                    "(resize the images to one size, or read them as separate images, not as a sequence)"
                )
            return image
        assert self._cap is not None
        ok, image = self._cap.read()
        if ok:
            self._consumed += 1
        return image if ok else None

    def _skip(self, n: int, next_index: int) -> bool:
        """Pass over ``n`` frames (grab without decoding); False when the source ended."""
        if self._files is not None:
            return next_index < len(self._files)
        assert self._cap is not None
        for _ in range(n):
            if not self._cap.grab():
                return False
            self._consumed += 1
        return True

    def close(self) -> None:
        """Release the file / device (idempotent)."""
        cap = getattr(self, "_cap", None)  # None too when the constructor failed early
        if cap is not None:
            cap.release()
            self._cap = None

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _url_name(url: str) -> str:
    """A file-name stem from a URL: its last path part without suffix, else its host (``stream`` if neither)."""
    rest = _URL.sub("", url).split("?")[0].rstrip("/")
    parts = [p for p in rest.split("/") if p]
    stem = Path(parts[-1]).stem if len(parts) > 1 else (parts[0] if parts else "")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")
    return stem or "stream"


def open_source(
    source: str | os.PathLike | int,
    *,
    sequence: bool = False,
    fps: float = 30.0,
    stride: int = 1,
    max_frames: int | None = None,
) -> VideoSource:
    """Open a video file, camera index, stream URL or (``sequence=True``) image folder: :class:`VideoSource`.

    Raises:
        VideoReadError: the source cannot be opened or gives no frame (the message names it).
        ValueError: bad ``stride`` / ``max_frames`` / ``fps``.
    """
    return VideoSource(source, sequence=sequence, fps=fps, stride=stride, max_frames=max_frames)


class VideoWriter:
    """An MP4 (MPEG-4 Part 2, fourcc ``mp4v``: OpenCV's FFmpeg builds always have its encoder) written frame by
    frame; :meth:`close` finalises the file (also on ``with`` exit, e.g. after Ctrl-C), so that it plays.

    Args:
        path: the ``.mp4`` to write (its folder must exist).
        fps: frames per second.
        size: ``(width, height)`` pixels; every frame must have it.

    Raises:
        VideoReadError: OpenCV cannot open the file for writing (the message names it).
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self._writer: cv2.VideoWriter | None = cv2.VideoWriter(
            str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), self.size
        )
        if not self._writer.isOpened():
            self._writer = None
            raise VideoReadError(f"{self.path}: cannot write this video (is the folder there and writable?)")
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 BGR frame of :attr:`size`.

        Raises:
            ValueError: a frame of another size. RuntimeError: the writer is closed.
        """
        if self._writer is None:
            raise RuntimeError(f"{self.path}: writer is closed")
        if (image.shape[1], image.shape[0]) != self.size:
            raise ValueError(
                f"{self.path}: the frame is {image.shape[1]}x{image.shape[0]} pixels, the video "
                f"{self.size[0]}x{self.size[1]} (its first frame's); the frames of a video share one size"
            )
        self._writer.write(np.ascontiguousarray(image))
        self.frames += 1

    def close(self) -> None:
        """Finalise the file (idempotent)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

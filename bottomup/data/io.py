"""Image loading: any common image file -> ``(H, W, 3)`` uint8 RGB, with clear errors.

Pixels are returned in the stored (raw) orientation; EXIF orientation tags are ignored, as in the official
HigherHRNet loader (``cv2.IMREAD_IGNORE_ORIENTATION``), because COCO annotations are in that raw frame.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from bottomup.data.transforms import check_image

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "load_image", "read_image", "expand_inputs", "expand_labelled_inputs"]

#: File endings taken from folders and glob patterns (any named file is tried whatever its ending).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".ppm"})


class ImageReadError(OSError, ValueError):
    """An image file is missing, unreadable, or cannot be decoded.

    Attributes:
        path: the file.
        reason: what went wrong.
    """

    def __init__(self, path: str | os.PathLike, reason: str, hint: str | None = None) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        self.hint = hint
        if hint is None:
            hint = "Check the file (re-download or replace it), or remove its record from the annotation file."
        super().__init__(f"cannot read image {self.path}: {reason}. {hint}")

    def __reduce__(self):  # keep picklable (DataLoader workers) despite the 3-argument constructor
        return (type(self), (self.path, self.reason, self.hint))


#: File suffixes of videos: :func:`load_image` refuses them with a hint instead of "corrupt image".
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})


def _to_uint8(image: np.ndarray, path: str) -> np.ndarray:
    """Scale any decoded dtype to uint8 over its full range (16-bit: v / 257, so 65535 -> 255)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return np.rint(image.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    if image.dtype in (np.float32, np.float64):  # HDR / float TIFF: assume [0, 1]
        return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ImageReadError(path, f"unsupported pixel type {image.dtype}; convert it to 8- or 16-bit")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB.

    Grayscale is replicated to 3 channels, an alpha channel is dropped (not blended), and 16-bit images are
    scaled to 8 bits over the full range (``round(v * 255 / 65535)``), not truncated.

    Args:
        path: image file (any format OpenCV decodes: JPEG, PNG, TIFF, BMP, WebP, ...).

    Returns:
        ``(H, W, 3)`` uint8 RGB array in the file's raw pixel frame (EXIF orientation ignored).

    Raises:
        ImageReadError: (an ``OSError`` and a ``ValueError``) the file is missing, unreadable, empty, a video
            (:data:`VIDEO_SUFFIXES`), or OpenCV cannot decode it; the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageReadError(path, "file does not exist")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in VIDEO_SUFFIXES:
        raise ImageReadError(
            path,
            f"it is a video ({suffix}), not an image",
            "Extract its frames first (e.g. ffmpeg -i video.mp4 frames/%06d.jpg) and pass the folder, or run "
            "PoseEstimator(..., color='bgr') on cv2.VideoCapture frames.",
        )
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageReadError(path, f"could not open it ({e.strerror or e})") from e
    if not data:
        raise ImageReadError(path, "file is empty")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageReadError(path, "OpenCV could not decode it (corrupt or unsupported format)")
    image = _to_uint8(image, path)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageReadError(path, f"unsupported number of channels {channels}; expected 1, 3 or 4")


def expand_inputs(patterns: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Files named by ``patterns`` (files, folders, globs), in order, without duplicates.

    A file named explicitly is used whatever its extension; folders and globs contribute only files with an
    image extension (:data:`IMAGE_EXTENSIONS`).

    Returns:
        ``(files, unmatched)``: the files, and the patterns that matched nothing.
    """
    labelled, unmatched = expand_labelled_inputs(patterns)
    return [path for path, _ in labelled], unmatched


def expand_labelled_inputs(patterns: Sequence[str]) -> tuple[list[tuple[Path, str]], list[str]]:
    """:func:`expand_inputs` with a label per file that tells apart files of the same name in different inputs.

    The label is the file's path relative to the input it came from, ``/``-separated:

    * a folder: relative to the folder's parent (``photos/x.jpg`` for ``photos/``, also given as
      ``/data/photos``; ``a/x.jpg`` and ``b/x.jpg`` for the folders ``a`` and ``b``);
    * a glob: relative to the parent of its leading folder without wildcards (``more/*.png`` -> ``more/x.png``,
      ``clips/**/*.jpg`` -> ``clips/day1/x.jpg``); a glob without a folder part (``*.jpg``) gives the name;
    * a file named directly: its name (``x.jpg`` for ``some/where/x.jpg``).

    Returns:
        ``(files, unmatched)``: ``(path, label)`` per file, in order (a file matched twice keeps its first label),
        and the patterns that matched nothing.
    """
    files: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    unmatched: list[str] = []

    for pattern in patterns:
        path = Path(pattern)
        found: list[Path] = []
        base: str | None = None  # labels are relative to this folder's parent; None: the file's name
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            base = pattern
        elif path.is_file():
            found = [path]
        elif glob.has_magic(pattern):
            found = sorted(
                Path(p)
                for p in glob.glob(pattern, recursive=True)
                if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_EXTENSIONS
            )
            fixed = list(itertools.takewhile(lambda part: not glob.has_magic(part), path.parts[:-1]))
            base = os.path.join(*fixed) if fixed else None
        if not found:
            unmatched.append(pattern)
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append((p, _label(p, base)))
    return files, unmatched


def _label(path: Path, base: str | None) -> str:
    """``path`` relative to the parent of the folder ``base`` (``/``-separated); its name when ``base`` is None."""
    if base is None:
        return path.name
    parent = os.path.dirname(os.path.abspath(base))
    return Path(os.path.relpath(os.path.abspath(path), parent)).as_posix()


def read_image(image: str | os.PathLike | np.ndarray) -> np.ndarray:
    """An image path (read with ``bottomup.data.io.load_image``) or an ``(H, W, 3)`` uint8 RGB array (checked).

    Raises:
        bottomup.data.io.ImageReadError: missing / unreadable file.
        TypeError / ValueError: anything else, or an array of the wrong shape or dtype.
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, np.ndarray):
        return check_image(image)
    raise TypeError(f"image must be a path or an (H, W, 3) uint8 RGB numpy array, got {type(image).__name__}")

"""Image loading: any common image file -> ``(H, W, 3)`` uint8 RGB, with clear errors.

EXIF orientation (a phone photo stored sideways with a tag saying how to turn it) depends on who reads the file:

* Images to find people in -- ``python -m bottomup.infer``, the Python API (``PoseEstimator(path)``, :func:`read_image`)
  and INT8 calibration -- are turned upright by their EXIF orientation tag (:func:`load_image` with
  ``apply_exif=True``), as photo viewers, browsers and OpenCV's ``cv2.imread`` show them (video frames and image
  sequences, read with ``cv2.imread``, are turned the same way). Keypoints are then in that upright frame.
* Annotated images (training, evaluation: :func:`load_annotated_image`) stay in their stored (raw) pixel frame, the
  frame of COCO's annotations: the COCO tools decode images without applying the tag (PIL's ``Image.open``
  without ``ImageOps.exif_transpose``; pycocotools reads no pixels) and the official HigherHRNet loader passes
  ``cv2.IMREAD_IGNORE_ORIENTATION``. Only where the image record's ``width`` / ``height`` fit the upright image
  and not the stored one (an annotation tool that showed the photo upright, 90-degree tags 5-8) is the tag
  applied, so that the annotations stay on their joints.

Orientation tags are read from JPEG (APP1 Exif), PNG (eXIf) and WebP (EXIF) files (:func:`exif_orientation`).
TIFF files are left to OpenCV's decoder, which applies their Orientation tag itself whatever the flags (libtiff's
RGBA reading): a TIFF comes upright in both cases.
"""

from __future__ import annotations

import glob
import itertools
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from bottomup.data.transforms import check_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "apply_orientation",
    "exif_orientation",
    "expand_inputs",
    "expand_labelled_inputs",
    "load_annotated_image",
    "load_image",
    "read_image",
]

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


def _tiff_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of IFD0 of a TIFF structure (an EXIF block or a TIFF file); 1 without one."""
    if len(tiff) < 8 or tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            break
        tag, kind = struct.unpack_from(order + "HH", tiff, entry)
        if tag == 0x0112 and kind == 3:  # SHORT
            (value,) = struct.unpack_from(order + "H", tiff, entry + 8)
            return int(value) if 1 <= value <= 8 else 1
    return 1


def _exif_block(data: bytes) -> bytes | None:
    """The TIFF structure of the EXIF data of a JPEG, PNG or WebP file's bytes, or ``None`` (also for a TIFF
    file, whose orientation OpenCV applies when decoding it)."""
    if data[:2] == b"\xff\xd8":  # JPEG: markers up to the scan, APP1 "Exif\0\0"
        pos = 2
        while pos + 4 <= len(data) and data[pos] == 0xFF:
            marker = data[pos + 1]
            if marker in (0xD9, 0xDA):  # end of image / start of scan
                return None
            if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
                pos += 2
                continue
            (length,) = struct.unpack_from(">H", data, pos + 2)
            body = data[pos + 4 : pos + 2 + length]
            if marker == 0xE1 and body[:6] == b"Exif\x00\x00":
                return body[6:]
            pos += 2 + length
        return None
    if data[:8] == b"\x89PNG\r\n\x1a\n":  # PNG: the eXIf chunk
        pos = 8
        while pos + 8 <= len(data):
            length, kind = struct.unpack_from(">I4s", data, pos)
            if kind == b"eXIf":
                return data[pos + 8 : pos + 8 + length]
            if kind == b"IDAT" or kind == b"IEND":
                return None
            pos += 12 + length
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":  # WebP: the EXIF chunk
        pos = 12
        while pos + 8 <= len(data):
            kind, length = struct.unpack_from("<4sI", data, pos)
            if kind == b"EXIF":
                body = data[pos + 8 : pos + 8 + length]
                return body[6:] if body[:6] == b"Exif\x00\x00" else body
            pos += 8 + length + (length & 1)
        return None
    return None


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation of an image file's bytes: 1 (upright, also when there is no tag) to 8, as the EXIF
    standard numbers them (6: the stored pixels must turn 90 degrees clockwise to be upright).

    JPEG (APP1 Exif), PNG (eXIf) and WebP (EXIF) files; other formats (TIFF: OpenCV applies its tag when decoding)
    and damaged EXIF data give 1.
    """
    try:
        block = _exif_block(data)
        return _tiff_orientation(block) if block else 1
    except struct.error:
        return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` ``(H, W, ...)`` turned upright by an EXIF ``orientation`` (1-8), as ``PIL.ImageOps.exif_transpose``
    turns it: 2 mirror left-right, 3 rotate 180, 4 mirror top-bottom, 5 transpose, 6 rotate 90 clockwise,
    7 transverse, 8 rotate 90 counter-clockwise (5-8 swap height and width). A contiguous copy unless 1.

    Raises:
        ValueError: an orientation outside 1-8.
    """
    if orientation == 1:
        return image
    if orientation == 2:
        out = image[:, ::-1]
    elif orientation == 3:
        out = image[::-1, ::-1]
    elif orientation == 4:
        out = image[::-1]
    elif orientation == 5:
        out = np.swapaxes(image, 0, 1)
    elif orientation == 6:
        out = np.rot90(image, -1)
    elif orientation == 7:
        out = np.swapaxes(image, 0, 1)[::-1, ::-1]
    elif orientation == 8:
        out = np.rot90(image, 1)
    else:
        raise ValueError(f"EXIF orientation must be 1 to 8, got {orientation}")
    return np.ascontiguousarray(out)


def _read_file(path: str) -> bytes:
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
    return data


#: JPEG straight to RGB (OpenCV >= 4.10): the pixels of ``IMREAD_UNCHANGED`` + ``cvtColor`` (a JPEG has no alpha; gray
#: is replicated as ``GRAY2RGB`` does; ``ANYDEPTH`` keeps a 12-bit JPEG's depth for :func:`_to_uint8`), without the
#: colour-conversion pass; ``IGNORE_ORIENTATION``: the stored frame, as ``IMREAD_UNCHANGED``.
_JPEG_RGB = (
    cv2.IMREAD_COLOR_RGB | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
    if hasattr(cv2, "IMREAD_COLOR_RGB")
    else None
)


def _decode(data: bytes, path: str) -> np.ndarray:
    """Stored pixels as ``(H, W, 3)`` uint8 RGB (EXIF orientation not applied)."""
    if _JPEG_RGB is not None and data[:3] == b"\xff\xd8\xff":
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _JPEG_RGB)
        if image is not None and image.ndim == 3 and image.shape[2] == 3 and image.size:
            return _to_uint8(image, path)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # never applies EXIF orientation
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


def load_image(path: str | os.PathLike, *, apply_exif: bool = False) -> np.ndarray:
    """Read an image file as RGB.

    Grayscale is replicated to 3 channels, an alpha channel is dropped (not blended), and 16-bit images are
    scaled to 8 bits over the full range (``round(v * 255 / 65535)``), not truncated.

    Args:
        path: image file (any format OpenCV decodes: JPEG, PNG, TIFF, BMP, WebP, ...).
        apply_exif: turn the pixels upright by the file's EXIF orientation tag (:func:`exif_orientation`,
            :func:`apply_orientation`), as :func:`read_image` (inference) does; ``False`` (default): the stored
            pixel frame, the frame of COCO's annotations (see the module docstring).

    Returns:
        ``(H, W, 3)`` uint8 RGB array (``(W, H, 3)`` for a 90-degree tag with ``apply_exif``).

    Raises:
        ImageReadError: (an ``OSError`` and a ``ValueError``) the file is missing, unreadable, empty, a video
            (:data:`VIDEO_SUFFIXES`), or OpenCV cannot decode it; the message names the file.
    """
    path = os.fspath(path)
    data = _read_file(path)
    image = _decode(data, path)
    return apply_orientation(image, exif_orientation(data)) if apply_exif else image


def load_annotated_image(path: str | os.PathLike, height: int | None = None, width: int | None = None) -> np.ndarray:
    """An annotated image in the frame of its annotations (training, evaluation): the stored pixels, as COCO and
    the official loader read them, unless only the EXIF-upright image has the record's ``height`` x ``width``
    (an annotation tool showed it upright: 90-degree tags), in which case that one.

    Args:
        path: the image file. height, width: the image record's size (``None``: the stored pixels).

    Returns:
        ``(H, W, 3)`` uint8 RGB; its size may still differ from the record's (the caller says so).

    Raises:
        ImageReadError: as :func:`load_image`.
    """
    path = os.fspath(path)
    data = _read_file(path)
    image = _decode(data, path)
    if height and width and image.shape[:2] != (int(height), int(width)):
        orientation = exif_orientation(data)
        if orientation >= 5 and image.shape[:2] == (int(width), int(height)):
            return apply_orientation(image, orientation)
    return image


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
    """An image path (read with :func:`load_image`, turned upright by its EXIF orientation) or an ``(H, W, 3)``
    uint8 RGB array (checked, used as it is).

    Raises:
        bottomup.data.io.ImageReadError: missing / unreadable file.
        TypeError / ValueError: anything else, or an array of the wrong shape or dtype.
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, apply_exif=True)
    if isinstance(image, np.ndarray):
        return check_image(image)
    raise TypeError(f"image must be a path or an (H, W, 3) uint8 RGB numpy array, got {type(image).__name__}")

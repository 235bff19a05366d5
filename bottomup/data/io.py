"""Image loading: any common image file -> ``(H, W, 3)`` uint8 RGB, with clear errors.

Pixels are returned in the stored (raw) orientation; EXIF orientation tags are ignored, as in the official
HigherHRNet loader (``cv2.IMREAD_IGNORE_ORIENTATION``), because COCO annotations are in that raw frame.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

__all__ = ["ImageReadError", "load_image"]


class ImageReadError(OSError, ValueError):
    """An image file is missing, unreadable, or cannot be decoded.

    Attributes:
        path: the file.
        reason: what went wrong.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(
            f"cannot read image {self.path}: {reason}. Check the file (re-download or replace it), "
            "or remove its record from the annotation file."
        )

    def __reduce__(self):  # keep picklable (DataLoader workers) despite the 2-argument constructor
        return (type(self), (self.path, self.reason))


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
        ImageReadError: (an ``OSError`` and a ``ValueError``) the file is missing, unreadable, empty, or
            OpenCV cannot decode it; the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageReadError(path, "file does not exist")
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

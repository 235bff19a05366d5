"""Torch-free file output: atomic JSON writing (results files, metrics, export descriptions)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_json"]


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (a temporary file in the same folder, then ``os.replace``):
    a kill leaves the old file or the new one, never half of one. Results files (evaluation, ``infer``) use it.

    Returns:
        the path.

    Raises:
        OSError: the folder cannot be made or written. TypeError: ``obj`` is not JSON-serialisable (nothing is
            left behind).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

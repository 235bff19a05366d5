"""Checkpoints: atomic writes, and loading that never runs code from the file.

A training checkpoint (``last.pt`` / ``best.pt``) is a dict of tensors and plain Python values only, so it
loads with ``torch.load(weights_only=True)``:

``model`` (state_dict, no ``module.`` prefix), ``optimizer``, ``scheduler``, ``scaler`` (or None), ``epoch``
(epochs completed), ``step`` (optimiser steps completed), ``rng`` (torch / CUDA / NumPy / Python states),
``config`` (the resolved Hydra config as YAML text), ``metrics`` (dict of floats), ``version``.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "write_json",
    "CheckpointError",
    "find_checkpoint",
]

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used (missing, truncated, not a checkpoint of this project)."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then renamed over
    ``path`` (``os.replace``): a crash or kill at any moment leaves either the old complete file or the new
    complete file, never a truncated one.

    Returns:
        the final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"version": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` (never executes code from the file).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is truncated, corrupt, or holds objects other than tensors and plain values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(
            f"cannot load checkpoint {path}: {e}. It is corrupt, truncated, or not a weights-only checkpoint."
        ) from e


def rng_state() -> dict[str, Any]:
    """Random states of torch (CPU and CUDA), NumPy's global generator and Python's ``random``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [int(version), list(internal), gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (a temporary file in the same folder, then ``os.replace``):
    a kill leaves the old file or the new one, never half of one. Results files (evaluation, ``infer``) use it.

    Returns:
        the path.
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


def find_checkpoint(root: str | os.PathLike = "outputs") -> Path | None:
    """The checkpoint of the newest training run under ``root``.

    Runs are the folders holding a ``best.pt`` or ``last.pt``; the newest is the one whose checkpoint was
    modified last. In that run ``best.pt`` (best validation AP) is preferred over ``last.pt``.

    Returns:
        the path, or ``None`` when ``root`` holds no checkpoint.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    runs: dict[Path, float] = {}
    for name in ("best.pt", "last.pt"):
        for ckpt in root.rglob(name):
            if ckpt.is_file():
                runs[ckpt.parent] = max(runs.get(ckpt.parent, 0.0), ckpt.stat().st_mtime)
    if not runs:
        return None
    newest = max(runs, key=lambda d: (runs[d], str(d)))
    best = newest / "best.pt"
    return best if best.is_file() else newest / "last.pt"

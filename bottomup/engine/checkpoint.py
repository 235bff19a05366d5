"""Checkpoints: atomic writes, and loading that never runs code from the file.

A training checkpoint (``last.pt`` / ``best.pt``) is a dict of tensors and plain Python values only, so it
loads with ``torch.load(weights_only=True)``:

``model`` (state_dict, no ``module.`` prefix), ``optimizer``, ``scheduler``, ``scaler`` (or None), ``epoch``
(epochs completed), ``step`` (optimiser steps completed), ``batch`` (batches of epoch ``epoch`` trained when
``trainer.max_steps`` cut it short, else 0; older checkpoints lack it: 0), ``rng`` (torch / CUDA of the writer's
device / NumPy / Python states, :func:`rng_state`), ``config`` (the resolved Hydra config as YAML text),
``metrics`` (dict of floats), ``version``.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bottomup.core.io import write_json
from bottomup.models.weights import load_weights_file

log = logging.getLogger(__name__)

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "write_json",
    "CheckpointError",
    "CheckpointWriteError",
    "remove_stale_temporaries",
    "find_checkpoint",
    "folder_given_message",
]

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used (missing, truncated, not a checkpoint of this project)."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (full disk, no permission, ...); the previous file at that path is intact."""


def _free_space(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free in {folder}"
    except OSError:
        return f"free space in {folder} unknown"


def _write_reason(e: BaseException) -> str:
    """A short reason for a failed write: ENOSPC / EDQUOT and torch's ``unexpected pos`` become "no space left"."""
    text = str(e)
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device ({e.strerror or text})"
    if "unexpected pos" in text or "file write failed" in text:  # torch's zip writer hit a short write
        return "no space left on the device (the write stopped short)"
    return text.splitlines()[0] if text else type(e).__name__


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then renamed over
    ``path`` (``os.replace``): a crash or kill at any moment leaves either the old complete file or the new
    complete file, never a truncated one.

    Returns:
        the final path.

    Raises:
        CheckpointWriteError: (an ``OSError``) the write failed; the message names the file, the reason ("no
            space left ..." for a full disk) and the free space; the previous file at ``path`` is intact.
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
    except (OSError, RuntimeError) as e:
        Path(tmp).unlink(missing_ok=True)
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was there before"
        raise CheckpointWriteError(
            f"cannot write checkpoint {path}: {_write_reason(e)}; {_free_space(path.parent)}; {kept}"
        ) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a killed :func:`save_checkpoint` / :func:`write_json` left in ``folder``
    (``.<name>.<random>.tmp``, up to a full checkpoint each). Call it when a run starts or resumes there.

    Returns:
        the files removed.
    """
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def folder_given_message(path: str | os.PathLike, given: str | None = None) -> str:
    """The message for a folder given where a checkpoint file belongs: it names the ``last.pt`` / ``best.pt`` in it
    to pass instead (or says there is none).

    Args:
        path: the folder. given: how it was given, e.g. ``"resume=runs/a"`` or ``"--checkpoint runs/a"`` (default
            ``"checkpoint <path>"``).
    """
    path = Path(path)
    given = given or f"checkpoint {path}"
    what = {"last.pt": "the latest epoch, what resume= continues", "best.pt": "the best validation AP"}
    inside = [f"{path / name} ({why})" for name, why in what.items() if (path / name).is_file()]
    if inside:
        return f"{given} is a folder, not a checkpoint file: pass the checkpoint in it, {' or '.join(inside)}"
    return (
        f"{given} is a folder, not a checkpoint file, and holds no last.pt / best.pt: pass a checkpoint file (a run's "
        "last.pt / best.pt, or an official .pth)"
    )


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", *, key: str | None = None
) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` (never executes code from the file;
    ``bottomup.models.weights.load_weights_file``: NumPy numbers and arrays, as an MMPose 0.x ``meta`` holds, are
    accepted too).

    Args:
        path: the file. map_location: where tensors go.
        key: the config key that gave ``path`` (``"resume"``, ``"checkpoint"``), for the messages.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: ``path`` is a folder (the message names the ``last.pt`` / ``best.pt`` in it), or the file
            is truncated, corrupt, or holds objects other than tensors and plain values.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(folder_given_message(path, f"{key}={path}" if key else None))
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"cannot load checkpoint {path}: the file is empty (0 bytes); it was not written to the end"
        )
    try:
        return load_weights_file(path, map_location=map_location)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(f"cannot load checkpoint {path}: {_load_reason(e)}") from e


def _load_reason(e: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's advice to load it unsafely."""
    text = str(e)
    found = re.search(
        r"Unsupported global: GLOBAL ([\w.]+)|unsupported GLOBAL ([\w.]+) whose module"
        r"|Can only build .*? but got <class '([\w.]+)'>",  # a type set up from the file (NumPy object arrays, ...)
        text,
    )
    if found:
        what = next(g for g in found.groups() if g)
        return (
            f"it holds Python objects other than tensors and plain values ({what}), which could run code "
            "when loaded, so it is refused. Use a checkpoint of this project or a plain state_dict (.pth) of weights."
        )
    if "Weights only load failed" in text:
        detail = re.search(r"Unsupported operand \d+|Unsupported class [\w.]+", text)
        return (
            f"it is not a PyTorch checkpoint, or it is corrupt or truncated (the reader stopped at: "
            f"{detail.group(0) if detail else 'an unreadable record'})"
        )
    first = (text.strip().splitlines() or [type(e).__name__])[0].rstrip(".")
    return f"{first}. The file is corrupt or truncated, or it is not a PyTorch checkpoint."


def rng_state() -> dict[str, Any]:
    """Random states of torch's CPU generator, of the CUDA device this process uses, of NumPy's global generator
    and of Python's ``random``.

    Returns:
        ``{"torch": uint8 tensor, "cuda": uint8 tensor of the current CUDA device (``torch.cuda.current_device()``)
        or None without CUDA, "numpy": [keys (624,) int64, pos, has_gauss, cached], "python": [version, internal,
        gauss]}``. Only the current device's CUDA state is saved: a process uses one device (DDP: its local rank's),
        and a per-device list would tie the checkpoint to the number of GPUs visible when it was written.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(torch.cuda.current_device()) if torch.cuda.is_available() else None,
        "numpy": [torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [int(version), list(internal), gauss],
    }


def _saved_cuda_state(saved: Any, device: int) -> torch.Tensor | None:
    """The CUDA state for ``device`` in a checkpoint's ``rng["cuda"]``: a tensor (this format: the writer's
    current device), a list of per-device states (earlier format: entry ``device``, None with a warning when the
    list is shorter), or None / empty (written without CUDA)."""
    if isinstance(saved, torch.Tensor):
        return saved
    if isinstance(saved, (list, tuple)) and saved:
        if device < len(saved):
            return saved[device]
        log.warning(
            "checkpoint has no CUDA random state for device %d (it holds %d per-device state%s); cuda:%d keeps its "
            "fresh seed", device, len(saved), "" if len(saved) == 1 else "s", device,
        )  # fmt: skip
    return None


def _rank_seed(state: dict[str, Any], rank: int) -> int:
    """A 64-bit seed from the saved (rank 0) torch and NumPy states and ``rank``: distinct per rank, and the same on
    every resume from one checkpoint."""
    digest = hashlib.sha256()
    digest.update(state["torch"].numpy().tobytes())
    digest.update(state["numpy"][0].numpy().tobytes())
    digest.update(f"{int(state['numpy'][1])}/rank {int(rank)}".encode())
    return int.from_bytes(digest.digest()[:8], "little")


def set_rng_state(state: dict[str, Any], rank: int = 0) -> None:
    """Restore what :func:`rng_state` returned, in the process of rank ``rank``.

    A training checkpoint is written by rank 0, so its states are rank 0's. Rank 0 (and a single process) restores
    them: torch CPU, NumPy, Python, and the CUDA state of its current device (``torch.cuda.current_device()``) -
    from a list of per-device states (earlier checkpoints) the entry of that device index, skipped with a warning
    when the list is shorter; nothing fails because the saved and visible GPU counts differ. A CUDA state is
    ignored without CUDA, and a checkpoint written without CUDA leaves the CUDA generator as seeded.

    Any other rank would draw rank 0's very numbers with rank 0's states (training seeds rank ``r`` with
    ``seed + r`` so that they differ), and its own states are not in the file: it seeds torch CPU, its current
    CUDA device, NumPy and Python from a hash of the saved states and ``rank`` instead, distinct per rank and the
    same on every resume from that checkpoint.

    Args:
        state: a checkpoint's ``rng``. rank: this process's rank (``DistInfo.rank``; 0 without DDP).

    Raises:
        KeyError: ``state`` lacks ``torch`` / ``numpy`` / ``python``.
    """
    if rank != 0:
        seed = _rank_seed(state, rank)
        torch.default_generator.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed(seed)  # the current device only
        np.random.seed(seed % 2**32)
        random.seed(seed)
        return
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        device = torch.cuda.current_device()
        cuda = _saved_cuda_state(state.get("cuda"), device)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


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

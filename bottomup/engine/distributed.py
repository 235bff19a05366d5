"""Process-group helpers for ``torchrun`` (DDP): NCCL on CUDA, gloo on CPU."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "resolve_device"]


@dataclass(frozen=True)
class DistInfo:
    """Rank layout of this process. ``enabled`` is False for a plain single-process run."""

    enabled: bool = False
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str | torch.device = "auto", local_rank: int = 0, key: str = "trainer.device") -> torch.device:
    """The one place a device name is resolved (training, evaluation, inference, benchmarks).

    ``"auto"`` → ``cuda:<local_rank>`` when CUDA is present, else ``cpu``; ``"cuda"`` → ``cuda:<local_rank>``;
    other names (``"cpu"``, ``"cuda:1"``, a ``torch.device``) are used as given.

    Args:
        name: the device name.
        local_rank: this process's GPU under ``torchrun``.
        key: the config key or option the name came from, named in the error (``trainer.device``, ``--device``).

    Raises:
        ValueError: a name torch does not know, or a CUDA device on a machine without CUDA.
    """
    if str(name) == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{key}={name!r} is not a device: use auto, cpu or cuda") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{key}={name!r} but CUDA is not available here: use {key}=cpu or auto")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def init_distributed(device_name: str = "auto", timeout_s: float = 1800.0) -> tuple[DistInfo, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``, ...).

    Without those variables this is a single process and nothing is initialised. On CPU the gloo backend is
    used, and each process takes an equal share of the cores.

    Args:
        device_name: ``trainer.device`` (see :func:`resolve_device`).
        timeout_s: ``trainer.dist_timeout``: how long a collective waits for the other processes before it fails
            (a frozen or dead rank then ends the run instead of hanging it).

    Raises:
        ValueError: a non-positive timeout, or a device that is not available.
    """
    if not timeout_s > 0:
        raise ValueError(f"trainer.dist_timeout must be a positive number of seconds, got {timeout_s}")
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 1:
        return DistInfo(), resolve_device(device_name)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_world)))
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(seconds=float(timeout_s))
        )
    return DistInfo(True, rank, local_rank, world), device

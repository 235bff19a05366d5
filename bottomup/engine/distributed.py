"""Process-group helpers for ``torchrun`` (DDP): NCCL on CUDA, gloo on CPU."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from bottomup.engine.evaluator import EvalShard

__all__ = ["DistInfo", "evaluation_shard", "init_distributed", "process_group", "resolve_device"]


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


def init_distributed(
    device_name: str = "auto", timeout_s: float = 1800.0, *, key: str = "trainer.device"
) -> tuple[DistInfo, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``, ...).

    Without those variables this is a single process and nothing is initialised. On CPU the gloo backend is
    used, and each process takes an equal share of the cores.

    Args:
        device_name: ``trainer.device`` (see :func:`resolve_device`).
        timeout_s: ``trainer.dist_timeout``: how long a collective waits for the other processes before it fails
            (a frozen or dead rank then ends the run instead of hanging it).
        key: the config key the device name came from, for the messages (``device`` for evaluation).

    Raises:
        ValueError: a non-positive timeout, or a device that is not available.
    """
    if not timeout_s > 0:
        raise ValueError(f"trainer.dist_timeout must be a positive number of seconds, got {timeout_s}")
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 1:
        return DistInfo(), resolve_device(device_name, key=key)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank, key=key)
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


def evaluation_shard(dist_info: DistInfo) -> EvalShard | None:
    """This rank's :class:`~bottomup.engine.evaluator.EvalShard` (images ``rank::world_size``; people gathered on rank
    0 with ``torch.distributed.gather_object``, the scores sent back with ``broadcast_object_list``), or ``None``
    for a single process.

    Raises:
        RuntimeError: ``dist_info`` says the group is enabled but no process group is initialised.
    """
    from bottomup.engine.evaluator import EvalShard

    if not dist_info.enabled or dist_info.world_size <= 1:
        return None
    if not dist.is_initialized():
        raise RuntimeError("evaluation_shard: no process group (call init_distributed first)")

    def gather(obj: Any) -> list[Any] | None:
        parts: list[Any] | None = [None] * dist_info.world_size if dist_info.is_main else None
        dist.gather_object(obj, parts, dst=0)
        return parts

    def broadcast(obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    return EvalShard(dist_info.rank, dist_info.world_size, gather, broadcast)


@contextlib.contextmanager
def process_group(device_name: str = "auto", *, key: str = "device") -> Iterator[tuple[DistInfo, torch.device]]:
    """:func:`init_distributed` for the length of a ``with`` block; the group it joined is left at the end (nothing
    happens for a single process). For ``torchrun --nproc_per_node N -m bottomup.evaluate ...``.

    Raises:
        ValueError: as :func:`init_distributed`.
    """
    joined = not dist.is_initialized()
    dist_info, device = init_distributed(device_name, key=key)
    try:
        yield dist_info, device
    finally:
        if joined and dist_info.enabled and dist.is_initialized():
            dist.destroy_process_group()

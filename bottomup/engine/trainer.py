"""The training loop, in the style of torchvision's references.

* :func:`train_one_epoch` runs one pass over the data: forward (autocast), loss, backward (GradScaler for fp16),
  clipping, optimiser and per-iteration LR step. It stops on a non-finite loss; the losses stay on the device.
* :func:`fit` runs the epochs: sampler epoch, :func:`train_one_epoch`, the epoch log line, the evaluation every
  ``eval_every`` epochs (``best.pt`` by AP) and ``last.pt`` after every epoch (atomic writes).
* :class:`TrainState` is everything a checkpoint holds (``state_dict`` / ``load_state_dict``);
  :class:`TrainLogger` writes the heatmap / pull / push losses (and SWAHR's scale losses), the LR and throughput to TensorBoard, and
  pictures every ``image_every`` steps.
* :class:`EpochSampler` shuffles per epoch across processes and hands the epoch to the data set, which draws the
  augmentation of sample ``i`` from ``(seed, epoch, i)``.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from bottomup.data.batch import Batch, TrainingInputs
from bottomup.engine.checkpoint import rng_state, save_checkpoint, set_rng_state
from bottomup.engine.distributed import DistInfo
from bottomup.engine.optim import base_lr
from bottomup.models.precision import autocast

log = logging.getLogger("bottomup.train")

__all__ = [
    "NonFiniteLossError",
    "EpochSampler",
    "TrainState",
    "TrainLogger",
    "non_finite_tensors",
    "train_one_epoch",
    "fit",
]


class NonFiniteLossError(RuntimeError):
    """The loss or the weights became NaN or infinite. Training stops; a non-finite state is never written to a
    checkpoint, and the message says what is on disk (``python -m bottomup.train`` exits with status 3)."""


def non_finite_tensors(state: TrainState) -> list[str]:
    """Names of the floating-point tensors of the weights, buffers and optimiser state that hold NaN or inf
    (``model.<name>``, ``optimizer.<parameter name>.<key>``); empty when everything is finite.

    One device synchronisation when all is finite; the names are collected only otherwise.
    """
    named = [(f"model.{k}", v) for k, v in state.model.state_dict().items()]
    # Optimiser state is keyed by the parameter tensors themselves: name them, never format them (a tensor's
    # repr costs ~4 ms, ~12 s per check for a W16 HigherHRNet).
    param_names = {id(p): n for n, p in state.model.named_parameters()}
    for index, (param, entry) in enumerate(state.optimizer.state.items()):
        where = param_names.get(id(param), str(index))
        named += [(f"optimizer.{where}.{k}", v) for k, v in entry.items() if isinstance(v, torch.Tensor)]
    named = [(k, v) for k, v in named if v.is_floating_point() and v.numel()]
    if not named or bool(torch.stack([torch.isfinite(v).all() for _, v in named]).all()):
        return []
    return [k for k, v in named if not bool(torch.isfinite(v).all())]


def on_disk(run_dir: Path) -> str:
    """What a stopped run leaves to continue from: ``<run_dir>/last.pt`` with its epoch and step, or that there is
    none."""
    from bottomup.engine.checkpoint import load_checkpoint

    last = Path(run_dir) / "last.pt"
    if not last.is_file():
        return f"No checkpoint was written: {last} does not exist."
    try:
        ckpt = load_checkpoint(last)
        done = int(ckpt["epoch"])
        where = f"written after {done} epoch{'' if done == 1 else 's'}, step {int(ckpt['step'])}"
    except Exception as e:  # noqa: BLE001 - the message must not fail
        where = f"unreadable: {e}"
    return f"{last} is unchanged ({where}); continue from it with resume={last}."


class EpochSampler(Sampler):
    """Distributed, epoch-seeded shuffling that also hands the epoch to the dataset.

    Yields ``(index, epoch)`` pairs: the dataset derives its augmentation randomness from
    ``(seed, epoch, index)``, so a run is reproducible whatever the number of workers and after a resume.
    ``set_epoch(epoch, start)`` leaves out the first ``start`` indices of this process's order for that epoch (a
    resume inside the epoch): the rest come as in an uninterrupted epoch, with the same ``(index, epoch)``.
    """

    def __init__(self, size: int, dist_info: DistInfo, seed: int, shuffle: bool = True) -> None:
        self.inner = DistributedSampler(
            range(size),
            num_replicas=dist_info.world_size,
            rank=dist_info.rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=dist_info.world_size > 1,
        )
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Shuffle for ``epoch``, leaving out the first ``start`` indices of this process's order (0: the whole
        epoch; ``start`` = batches already trained x batch size).

        Raises:
            ValueError: ``start`` is negative.
        """
        if start < 0:
            raise ValueError(f"EpochSampler.set_epoch: start must be >= 0 (indices to leave out), got {start}")
        self.epoch, self.start = epoch, int(start)
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((i, self.epoch) for i in itertools.islice(self.inner, self.start, None))

    def __len__(self) -> int:
        return max(len(self.inner) - self.start, 0)


@dataclass
class TrainState:
    """What a training checkpoint holds, and its counters.

    Attributes:
        model: the plain network (not DDP / compiled); its ``state_dict`` has no ``module.`` prefix.
        optimizer, scheduler: stepped once per iteration.
        scaler: the fp16 ``GradScaler`` (disabled for fp32 / bf16: saved as ``None``).
        epoch: epochs completed. step: optimiser steps completed. best_ap: best validation AP so far (-1: none).
        batch: batches of epoch ``epoch`` already trained (an epoch cut short by ``max_steps``; 0 at an epoch's
            start): a resume continues with the next one.
        config: the resolved config as YAML text, saved so that the checkpoint can rebuild its network.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    epoch: int = 0
    step: int = 0
    best_ap: float = -1.0
    config: str = ""
    batch: int = 0

    def state_dict(self, metrics: dict[str, float] | None = None) -> dict[str, Any]:
        """The checkpoint (``bottomup.engine.checkpoint`` format): weights, optimiser, schedule, scaler, counters,
        random states, config and ``metrics`` (``best_ap`` added)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": self.epoch,
            "step": self.step,
            "batch": self.batch,
            "rng": rng_state(),
            "config": self.config,
            "metrics": {**(metrics or {}), "best_ap": self.best_ap},
        }

    def load_state_dict(self, checkpoint: dict[str, Any], rank: int = 0) -> None:
        """Continue from a checkpoint written by :meth:`state_dict`: weights, optimiser moments, schedule position,
        scaler, counters and random states (``rank``: this process's; rank 0 continues the saved random states,
        other ranks draw streams of their own, see :func:`~bottomup.engine.checkpoint.set_rng_state`).

        The hyperparameters are this state's own, not the checkpoint's: the optimiser's (``lr``,
        ``weight_decay``, betas, ...) and the schedule's base LRs are kept as built from the current config, and the
        LR is recomputed at the resumed step, so ``resume=... optim.lr=...`` (or another schedule) takes effect.
        The config is kept as it is (the one that runs is the one saved next).

        Raises:
            KeyError / RuntimeError: the checkpoint lacks a part, or its weights do not fit the model.
        """
        fresh_groups = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        fresh_base = list(getattr(self.scheduler, "base_lrs", []))
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        lambdas = getattr(self.scheduler, "lr_lambdas", None)
        recompute = bool(fresh_base) and lambdas is not None  # LambdaLR (warmup_multistep)
        for group, fresh in zip(self.optimizer.param_groups, fresh_groups, strict=True):
            group.update({k: v for k, v in fresh.items() if recompute or k not in ("lr", "initial_lr")})
        if recompute:  # the LR at the resumed step, from the current base LRs and schedule
            self.scheduler.base_lrs = fresh_base
            step = self.scheduler.last_epoch
            for group, base, factor in zip(self.optimizer.param_groups, fresh_base, lambdas, strict=True):
                group["lr"] = base * factor(step)
            self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        set_rng_state(checkpoint["rng"], rank=rank)
        self.epoch, self.step = int(checkpoint["epoch"]), int(checkpoint["step"])
        self.batch = int(checkpoint.get("batch", 0))  # checkpoints before "batch" restart the epoch
        self.best_ap = float(checkpoint.get("metrics", {}).get("best_ap", -1.0))


@dataclass
class TrainLogger:
    """Where a training run reports, besides the log: TensorBoard scalars and pictures, and the progress bar.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter`` or ``None`` (other ranks, or no TensorBoard).
        log_every: steps between scalar writes (``trainer.log_every``; step 1 is always written).
        image_every: steps between pictures (``trainer.image_every``; 0 = off).
        snapshot: ``snapshot() -> {name: (H, W, 3) uint8}``, the pictures to write (``None`` = none).
        progress: show a tqdm bar per epoch (``trainer.progress``, rank 0).
    """

    writer: Any = None
    log_every: int = 10
    image_every: int = 0
    snapshot: Callable[[], dict[str, np.ndarray]] | None = None
    progress: bool = True
    _bar: Any = field(default=None, repr=False)

    def start_epoch(self, epoch: int, total: int) -> None:
        self._bar = tqdm(total=total, desc=f"epoch {epoch}", disable=not self.progress, dynamic_ncols=True, leave=False)

    def tick(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def end_epoch(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def step(self, step: int, parts: dict[str, torch.Tensor], loss: float, lr: float, images_per_s: float) -> None:
        """After optimiser step ``step``: the bar's postfix, scalars every ``log_every`` steps, pictures every
        ``image_every`` steps."""
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.3e}", lr=f"{lr:.2e}", img_s=f"{images_per_s:.2f}")
        if self.writer is None:
            return
        if step % self.log_every == 0 or step == 1:
            for k, v in parts.items():
                self.writer.add_scalar(f"train/{k}", v.item(), step)
            self.writer.add_scalar("train/lr", lr, step)
            self.writer.add_scalar("train/images_per_s", images_per_s, step)
        if self.snapshot is not None and self.image_every and step % self.image_every == 0:
            for name, picture in self.snapshot().items():
                self.writer.add_image(f"train/{name}", picture, step, dataformats="HWC")

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        """``values`` as ``<prefix>/<key>`` scalars at ``step`` (e.g. the validation AP table)."""
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", float(v), step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        self.end_epoch()
        if self.writer is not None:
            self.writer.close()


def _to_device(batch: Batch, device: torch.device, channels_last: bool) -> TrainingInputs:
    """The batch's :class:`~bottomup.data.batch.TrainingInputs` on ``device`` (non-blocking from pinned memory on
    CUDA; the image NHWC with ``channels_last``)."""
    nb = device.type == "cuda"
    image = batch["image"].to(device, non_blocking=nb)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    return TrainingInputs(
        image=image,
        heatmaps=[h.to(device, non_blocking=nb) for h in batch["heatmaps"]],
        masks=[m.to(device, non_blocking=nb) for m in batch["masks"]],
        tag_indices=batch["tag_indices"].to(device, non_blocking=nb),
    )


def _backward_step(state: TrainState, model: nn.Module, loss: torch.Tensor, grad_clip: float | None) -> None:
    state.optimizer.zero_grad(set_to_none=True)
    scaler = state.scaler
    if scaler.is_enabled():
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(state.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(state.optimizer)
        scaler.update()
    else:
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        state.optimizer.step()
    state.scheduler.step()
    state.step += 1


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    state: TrainState,
    loader: DataLoader,
    device: torch.device,
    epoch: int,
    *,
    precision: str = "fp32",
    grad_clip: float | None = None,
    channels_last: bool = False,
    max_iters: int | None = None,
    logger: TrainLogger | None = None,
) -> dict[str, float]:
    """One pass over ``loader`` (at most ``max_iters`` batches); ``state.step`` counts the optimiser steps.

    Args:
        model: the network to run (``state.model``, or its DDP / compiled wrapper).
        criterion: ``(outputs, heatmaps, masks, tag_indices) -> {"loss", "heatmap/<i>", "pull", "push"}``.
        state: optimiser, schedule, scaler and counters.
        loader: batches of ``bottomup.data.collate`` (``None`` for a batch of unreadable images: skipped).
        device: where the batch goes. epoch: for the messages.
        precision: ``trainer.precision`` (autocast for bf16 / fp16). grad_clip: max gradient norm or ``None``.
        channels_last: NHWC inputs. max_iters: stop after this many batches. logger: TensorBoard and the bar.

    Returns:
        the mean of each loss part over the epoch, ``images_per_s`` and ``skipped`` (unreadable images).

    Raises:
        NonFiniteLossError: the loss is NaN or infinite (nothing is saved by this function).
    """
    model.train()
    logger = logger or TrainLogger(progress=False)
    total = len(loader) if max_iters is None else min(len(loader), max_iters)
    sums: dict[str, torch.Tensor] = {}
    seen = skipped = images = 0
    t0 = time.perf_counter()
    logger.start_epoch(epoch, total)
    for batch in itertools.islice(loader, total):  # never loads a batch past the last one trained
        logger.tick()
        if batch is None:
            skipped += int(loader.batch_size or 0)
            continue
        skipped += int(batch.get("num_skipped", 0))
        b = _to_device(batch, device, channels_last)
        with autocast(device.type, precision):
            outputs = model(b["image"])
        parts = criterion([o.float() for o in outputs], b["heatmaps"], b["masks"], b["tag_indices"])
        loss_value = parts["loss"].item()
        if not math.isfinite(loss_value):
            logger.end_epoch()
            detail = ", ".join(f"{k}={v.item():.4g}" for k, v in parts.items())
            raise NonFiniteLossError(
                f"non-finite loss at epoch {epoch}, step {state.step}: {detail}. Lower optim.lr, set "
                "trainer.grad_clip, or use trainer.precision=fp32."
            )
        _backward_step(state, model, parts["loss"], grad_clip)
        images += b["image"].shape[0]
        seen += 1
        for k, v in parts.items():
            sums[k] = sums.get(k, torch.zeros((), device=device)) + v.detach()
        ips = images / max(time.perf_counter() - t0, 1e-9)
        logger.step(state.step, parts, loss_value, base_lr(state.optimizer), ips)
    logger.end_epoch()
    means = {k: (v / max(seen, 1)).item() for k, v in sums.items()}
    means["images_per_s"] = images / max(time.perf_counter() - t0, 1e-9)
    means["skipped"] = float(skipped)
    if skipped:
        log.warning(
            "epoch %d: skipped %d image(s): unreadable, or not of the size their record says (the warnings above "
            "name them)", epoch, skipped,
        )  # fmt: skip
    return means


def _check_finite(state: TrainState, run_dir: Path, epoch: int) -> None:
    bad = non_finite_tensors(state)
    if bad:
        raise NonFiniteLossError(
            f"non-finite weights at the end of epoch {epoch} (step {state.step}): {len(bad)} "
            f"{'tensor holds' if len(bad) == 1 else 'tensors hold'} NaN / inf "
            f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}), so nothing was saved. {on_disk(run_dir)} "
            "Lower optim.lr (or schedule.gamma), set trainer.grad_clip, or use trainer.precision=fp32."
        )


def fit(
    model: nn.Module,
    criterion: nn.Module,
    state: TrainState,
    loader: DataLoader,
    sampler: EpochSampler,
    device: torch.device,
    run_dir: Path,
    *,
    epochs: int,
    iters_per_epoch: int,
    max_steps: int | None = None,
    evaluate: Callable[[], dict[str, float]] | None = None,
    eval_every: int = 0,
    is_main: bool = True,
    logger: TrainLogger | None = None,
    **step_settings: Any,
) -> dict[str, Any]:
    """Train from ``state.epoch`` to ``epochs`` (or ``max_steps`` optimiser steps in all).

    After every epoch rank 0 writes ``<run_dir>/last.pt``; every ``eval_every`` epochs every rank calls
    ``evaluate()`` (the validation AP table; each rank evaluates its share of the images, see
    ``bottomup.engine.evaluator.EvalShard``), and rank 0 logs it and keeps ``best.pt`` by AP. An epoch cut short by ``max_steps`` is not
    counted as completed: its trained batches are saved (``state.batch``), and a resume continues inside it with
    the next batch, the sampler leaving out the ``state.batch x loader.batch_size`` indices already trained, so
    that the run trains the samples (and augmentations) of an uninterrupted one.

    Args:
        model: the network to run (DDP / compiled wrapper of ``state.model``).
        criterion, state, loader, device: as :func:`train_one_epoch`; ``loader`` batches ``loader.batch_size``
            indices of ``sampler``. sampler: its epoch (and start, on a resume inside an epoch) is set each epoch.
        run_dir: where the checkpoints go. epochs: total epochs (``trainer.epochs``).
        iters_per_epoch: batches per epoch. max_steps: total step cap (``trainer.max_steps``).
        evaluate: ``() -> {"AP": ..., ...}`` or ``None``, called on every rank (all ranks get the same table).
            eval_every: epochs between evaluations (0 = off).
        is_main: rank 0 (logs, saves). logger: TensorBoard and the bar.
        **step_settings: ``precision``, ``grad_clip``, ``channels_last`` of :func:`train_one_epoch`.

    Returns:
        ``{"step", "best_ap", "last"}``, ``"ap"`` (the last evaluation's) and the last epoch's mean losses.

    Before any checkpoint is written the weights, buffers and optimiser state are checked (:func:`non_finite_tensors`):
    a non-finite state is never saved over a good one.

    Raises:
        NonFiniteLossError: a non-finite loss (from :func:`train_one_epoch`) or non-finite weights; its message
            says which checkpoint is on disk and how to continue.
        ValueError: a resume inside an epoch with a ``loader`` built on a batch sampler (no ``batch_size``).
    """
    summary: dict[str, Any] = {}
    means: dict[str, float] = {}
    for epoch in range(state.epoch, int(epochs)):
        if max_steps is not None and state.step >= int(max_steps):
            break
        start = state.batch if epoch == state.epoch else 0  # batches of this epoch trained before a resume
        if start >= iters_per_epoch:  # resumed with fewer iterations per epoch than it had trained
            state.epoch, state.batch = epoch + 1, 0
            continue
        if start and loader.batch_size is None:
            raise ValueError("fit: resuming inside an epoch needs a loader with a batch_size (not a batch_sampler)")
        sampler.set_epoch(epoch, start * int(loader.batch_size or 1))
        remaining = iters_per_epoch - start
        limit = remaining if max_steps is None else min(remaining, int(max_steps) - state.step)
        try:
            means = train_one_epoch(model, criterion, state, loader, device, epoch, max_iters=limit, logger=logger,
                                    **step_settings)  # fmt: skip
        except NonFiniteLossError as e:
            raise NonFiniteLossError(f"{e} {on_disk(run_dir)}") from None
        cut = limit < remaining  # by max_steps: the epoch goes on after a resume
        state.epoch, state.batch = (epoch, start + limit) if cut else (epoch + 1, 0)
        metrics = {f"train/{k}": v for k, v in means.items()}
        if is_main:
            scales = " ".join(f"{v:.3e}" for k, v in means.items() if k.startswith("scale/"))  # SWAHR only
            log.info(
                "epoch %d: step %d, loss %.4e, heatmap %s,%s pull %.4e, push %.4e, %.2f images/s",
                epoch, state.step, means.get("loss", float("nan")),
                " ".join(f"{v:.3e}" for k, v in means.items() if k.startswith("heatmap/")),
                f" scale {scales}," if scales else "",
                means.get("pull", float("nan")), means.get("push", float("nan")), means["images_per_s"],
            )  # fmt: skip
        _check_finite(state, run_dir, epoch)
        if evaluate is not None and eval_every and (epoch + 1) % eval_every == 0:
            stats = evaluate()
            ap = float(stats["AP"])
            metrics.update({f"val/{k}": float(v) for k, v in stats.items()})
            summary["ap"] = ap
            if ap > state.best_ap:
                state.best_ap = ap
                if is_main:
                    save_checkpoint(state.state_dict(metrics), run_dir / "best.pt")
            if is_main:
                if logger is not None:
                    logger.scalars("val", stats, state.step)
                log.info("epoch %d: val AP %.4f", epoch, ap)
        if is_main:
            save_checkpoint(state.state_dict(metrics), run_dir / "last.pt")
            if logger is not None:
                logger.flush()
        if cut:
            break
    summary.update(step=state.step, best_ap=state.best_ap, last=str(run_dir / "last.pt"), **means)
    return summary

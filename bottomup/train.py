"""Training entry point: ``python -m bottomup.train experiment=higherhrnet_w32 data.root=/data/coco``.

A plain loop in the style of torchvision's references: ``train_one_epoch`` runs one pass over the data,
``main`` builds everything from the Hydra config (``conf/train.yaml``), resumes, evaluates and saves.
Multi-GPU / multi-node with ``torchrun`` (DDP; gloo on CPU). Checkpoints: ``<run dir>/last.pt`` every
epoch (atomic), ``best.pt`` by COCO AP when evaluation is on; ``resume=<run dir>/last.pt`` continues a run.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from bottomup.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from bottomup.distributed import DistInfo, init_distributed
from bottomup.inference import AUTOCAST_DTYPES

log = logging.getLogger("bottomup.train")

__all__ = [
    "NonFiniteLossError",
    "train_one_epoch",
    "build_model",
    "build_optimizer",
    "build_train_dataset",
    "prepare_data_root",
    "run",
    "main",
]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops and the last good checkpoint is kept."""


class EpochSampler(Sampler):
    """Distributed, epoch-seeded shuffling that also hands the epoch to the dataset.

    Yields ``(index, epoch)`` pairs: the dataset derives its augmentation randomness from
    ``(seed, epoch, index)``, so a run is reproducible whatever the number of workers and after a resume.
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

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((i, self.epoch) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def prepare_data_root(data_cfg: DictConfig) -> Path:
    """Check ``data.root``; for the synthetic data set (``data.synthetic``) with no root, generate it once into
    the cache and point ``data.root`` there.

    Raises:
        ValueError: ``data.root`` is not set. FileNotFoundError: it is not a folder.
    """
    root = None if OmegaConf.is_missing(data_cfg, "root") else data_cfg.root
    if root is None and data_cfg.get("synthetic") is not None:
        from bottomup.synthetic import ensure_synthetic_coco

        root = str(ensure_synthetic_coco(**OmegaConf.to_container(data_cfg.synthetic, resolve=True)))
        with open_dict(data_cfg):
            data_cfg.root = root
    if root is None:
        raise ValueError(
            "data.root is not set: pass data.root=/path/to/coco, a folder in the COCO layout "
            "(annotations/person_keypoints_train2017.json, train2017/, val2017/)"
        )
    path = Path(str(root))
    if not path.is_dir():
        raise FileNotFoundError(f"data.root={path} does not exist or is not a folder: point data.root at your data set")
    return path


def build_model(model_cfg: DictConfig, num_keypoints: int) -> nn.Module:
    """Instantiate ``model_cfg`` (``_target_``) and check its K against the data's.

    Raises:
        ValueError: ``model.num_keypoints`` differs from ``data.num_keypoints``.
    """
    model = hydra.utils.instantiate(model_cfg)
    model_k = getattr(model, "num_keypoints", num_keypoints)
    if model_k != num_keypoints:
        raise ValueError(
            f"model.num_keypoints={model_k} but data.num_keypoints={num_keypoints}: the model must predict the "
            f"data set's keypoints (leave model.num_keypoints as ${{data.num_keypoints}})"
        )
    return model


def build_optimizer(
    optim_cfg: DictConfig, schedule_cfg: DictConfig, params: Any, iters_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimiser (``optim``, ``_partial_``) over ``params`` and its per-iteration LR schedule (``schedule``).

    Raises:
        ValueError: ``iters_per_epoch`` < 1 (from the schedule).
    """
    optimizer = hydra.utils.instantiate(optim_cfg)(params=params)
    return optimizer, hydra.utils.instantiate(schedule_cfg)(optimizer=optimizer, iters_per_epoch=iters_per_epoch)


def build_train_dataset(data_cfg: DictConfig, strides: Sequence[int], train: bool = True, seed: int = 0) -> Any:
    """The training ``KeypointDataset`` from ``conf/data/*.yaml`` (augmentation on when ``train``)."""
    from bottomup.data import KeypointDataset

    aug = data_cfg.augmentation
    return KeypointDataset(
        ann_file=str(data_cfg.train_ann),
        image_dir=str(data_cfg.train_images),
        keypoint_names=list(data_cfg.keypoint_names),
        flip_pairs=[list(p) for p in data_cfg.flip_pairs],
        input_size=int(data_cfg.input_size),
        output_strides=list(strides),
        sigma=float(data_cfg.sigma),
        max_people=int(data_cfg.max_people),
        train=train,
        max_rotation=float(aug.max_rotation),
        min_scale=float(aug.min_scale),
        max_scale=float(aug.max_scale),
        max_translate=float(aug.max_translate),
        flip_prob=float(aug.flip_prob),
        max_images=data_cfg.get("max_images"),
        seed=seed,
    )


def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    nb = device.type == "cuda"
    image = batch["image"].to(device, non_blocking=nb)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    return {
        "image": image,
        "heatmaps": [h.to(device, non_blocking=nb) for h in batch["heatmaps"]],
        "masks": [m.to(device, non_blocking=nb) for m in batch["masks"]],
        "tag_indices": batch["tag_indices"].to(device, non_blocking=nb),
    }


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: DataLoader,
    device: torch.device,
    epoch: int,
    step: int,
    *,
    scaler: torch.amp.GradScaler | None = None,
    precision: str = "fp32",
    grad_clip: float | None = None,
    channels_last: bool = False,
    max_iters: int | None = None,
    writer: Any = None,
    log_every: int = 10,
    progress: bool = True,
    on_step: Any = None,
    image_every: int = 0,
    snapshot: Any = None,
) -> tuple[int, dict[str, float]]:
    """One pass over ``loader`` (at most ``max_iters`` batches). Returns ``(step, mean of each loss part)``.

    Every ``image_every`` steps, ``snapshot(batch)`` (``{name: (H, W, 3) uint8}``) goes to TensorBoard as pictures.

    The losses stay on ``device``; one ``.item()`` per step reads the total to stop on a non-finite loss.

    Raises:
        NonFiniteLossError: the loss is NaN or infinite (nothing is saved by this function).
    """
    model.train()
    dtype = AUTOCAST_DTYPES[precision]
    total = len(loader) if max_iters is None else min(len(loader), max_iters)
    sums: dict[str, torch.Tensor] = {}
    seen = 0
    skipped = 0
    t0 = time.perf_counter()
    images = 0
    bar = tqdm(total=total, desc=f"epoch {epoch}", disable=not progress, dynamic_ncols=True, leave=False)
    for it, batch in enumerate(loader):
        if it >= total:
            break
        bar.update(1)
        if batch is None:
            skipped += int(loader.batch_size or 0)
            continue
        skipped += int(batch.get("num_skipped", 0))
        b = _to_device(batch, device, channels_last)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
        with autocast:
            outputs = model(b["image"])
        parts = criterion([o.float() for o in outputs], b["heatmaps"], b["masks"], b["tag_indices"])
        loss = parts["loss"]
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            bar.close()
            detail = ", ".join(f"{k}={v.item():.4g}" for k, v in parts.items())
            raise NonFiniteLossError(
                f"non-finite loss at epoch {epoch}, step {step}: {detail}. Lower optim.lr, set trainer.grad_clip, "
                f"or use trainer.precision=fp32; the last good checkpoint is kept."
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        scheduler.step()
        step += 1
        n = b["image"].shape[0]
        images += n
        seen += 1
        for k, v in parts.items():
            sums[k] = sums.get(k, torch.zeros((), device=device)) + v.detach()
        ips = images / max(time.perf_counter() - t0, 1e-9)
        lr = optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{loss_value:.3e}", lr=f"{lr:.2e}", img_s=f"{ips:.2f}")
        if writer is not None and (step % log_every == 0 or step == 1):
            for k, v in parts.items():
                writer.add_scalar(f"train/{k}", v.item(), step)
            writer.add_scalar("train/lr", lr, step)
            writer.add_scalar("train/images_per_s", ips, step)
        if writer is not None and snapshot is not None and image_every and step % image_every == 0:
            for name, picture in snapshot(b).items():
                writer.add_image(f"train/{name}", picture, step, dataformats="HWC")
        if on_step is not None:
            on_step(step)
    bar.close()
    means = {k: (v / max(seen, 1)).item() for k, v in sums.items()}
    means["images_per_s"] = images / max(time.perf_counter() - t0, 1e-9)
    means["skipped"] = float(skipped)
    if skipped:
        log.warning("epoch %d: skipped %d unreadable image(s) (see the warnings above for their names)", epoch, skipped)
    return step, means


def _make_writer(run_dir: Path, purge_step: int | None) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge_step)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train as ``cfg`` says. Returns a summary (run dir, steps, last losses, best AP)."""
    prepare_data_root(cfg.data)
    dist_info, device = init_distributed(str(cfg.trainer.device))
    tr = cfg.trainer
    if tr.precision not in AUTOCAST_DTYPES:
        raise ValueError(f"trainer.precision must be one of {list(AUTOCAST_DTYPES)}, got {tr.precision!r}")
    seed = int(cfg.seed)
    torch.manual_seed(seed + dist_info.rank)
    np.random.seed(seed + dist_info.rank)

    run_dir = Path(str(cfg.output_dir))
    start_epoch, step, best_ap = 0, 0, -1.0
    ckpt = None
    if cfg.resume:
        ckpt = load_checkpoint(str(cfg.resume))
        run_dir = Path(str(cfg.resume)).resolve().parent
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        best_ap = float(ckpt.get("metrics", {}).get("best_ap", -1.0))
        if dist_info.is_main:
            log.info("resuming from %s: epoch %d, step %d (writing into %s)", cfg.resume, start_epoch, step, run_dir)

    dataset = build_train_dataset(cfg.data, cfg.model.strides, train=True, seed=seed)
    model = build_model(cfg.model, int(cfg.data.num_keypoints))
    if getattr(model, "num_keypoints", None) not in (None, dataset.num_keypoints):
        raise ValueError(
            f"model predicts {model.num_keypoints} keypoints but {cfg.data.train_ann} has {dataset.num_keypoints}"
        )
    criterion = hydra.utils.instantiate(cfg.loss)
    model.to(device)
    if tr.channels_last:
        model = model.to(memory_format=torch.channels_last)
    sampler = EpochSampler(len(dataset), dist_info, seed)
    from bottomup.data import collate

    workers = int(cfg.data.num_workers)
    loader = DataLoader(
        dataset,
        batch_size=int(cfg.data.batch_size),
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        drop_last=len(sampler) >= int(cfg.data.batch_size),
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
    )
    if len(loader) == 0:
        raise ValueError(
            f"data.batch_size={cfg.data.batch_size} is larger than the {len(sampler)} training images per process"
        )
    iters_per_epoch = len(loader) if tr.steps_per_epoch is None else min(len(loader), int(tr.steps_per_epoch))

    optimizer, scheduler = build_optimizer(cfg.optim, cfg.schedule, model.parameters(), iters_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=tr.precision == "fp16")
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])

    train_model: nn.Module = model
    if dist_info.enabled:
        if tr.sync_bn and device.type == "cuda":
            train_model = nn.SyncBatchNorm.convert_sync_batchnorm(train_model)
        elif tr.sync_bn and dist_info.is_main:
            log.warning("trainer.sync_bn=true ignored: PyTorch's SyncBatchNorm runs on CUDA only")
        train_model = nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if tr.compile:
        train_model = torch.compile(train_model)

    writer = _make_writer(run_dir, purge_step=step if ckpt is not None else None) if dist_info.is_main else None
    config_text = OmegaConf.to_yaml(cfg, resolve=True)
    if dist_info.is_main:
        log.info(
            "training %s on %s (%d process%s), %d images, %d iterations/epoch, run dir %s",
            type(model).__name__, device, dist_info.world_size, "es" if dist_info.world_size > 1 else "",
            len(dataset), iters_per_epoch, run_dir,
        )  # fmt: skip

    def state(epoch_done: int, metrics: dict[str, float]) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "epoch": epoch_done,
            "step": step,
            "rng": rng_state(),
            "config": config_text,
            "metrics": metrics,
        }

    fixed: dict[str, Any] = {}

    def snapshot(_batch: dict[str, Any]) -> dict[str, np.ndarray]:
        """Predicted skeletons, predicted vs target heatmaps and tag maps on the first validation image."""
        from bottomup.explain import training_snapshot

        if not fixed:
            val_cfg = OmegaConf.merge(cfg.data, {"train_ann": cfg.data.val_ann, "train_images": cfg.data.val_images})
            fixed.update(build_train_dataset(val_cfg, cfg.model.strides, train=False).sample(0))
        return training_snapshot(model, fixed["image"], fixed["heatmaps"][-1], cfg=cfg)

    summary: dict[str, Any] = {"run_dir": str(run_dir), "start_step": step}
    means: dict[str, float] = {}
    max_steps = tr.max_steps
    try:
        for epoch in range(start_epoch, int(tr.epochs)):
            if max_steps is not None and step >= int(max_steps):
                break
            sampler.set_epoch(epoch)
            limit = iters_per_epoch
            if max_steps is not None:
                limit = min(limit, int(max_steps) - step)
            step, means = train_one_epoch(
                train_model, criterion, optimizer, scheduler, loader, device, epoch, step,
                scaler=scaler, precision=str(tr.precision), grad_clip=tr.grad_clip,
                channels_last=bool(tr.channels_last), max_iters=limit, writer=writer,
                log_every=int(tr.log_every), progress=bool(tr.progress) and dist_info.is_main,
                image_every=int(tr.image_every or 0), snapshot=snapshot,
            )  # fmt: skip
            metrics = {f"train/{k}": v for k, v in means.items()}
            epoch_done = epoch + 1 if limit == iters_per_epoch else epoch
            if dist_info.is_main:
                log.info(
                    "epoch %d: step %d, loss %.4e, heatmap %s, pull %.4e, push %.4e, %.2f images/s",
                    epoch, step, means.get("loss", float("nan")),
                    " ".join(f"{v:.3e}" for k, v in means.items() if k.startswith("heatmap/")),
                    means.get("pull", float("nan")), means.get("push", float("nan")), means["images_per_s"],
                )  # fmt: skip
            eval_every = int(tr.eval_every or 0)
            if eval_every and (epoch + 1) % eval_every == 0 and dist_info.is_main:
                from bottomup.evaluate import evaluate_model

                stats = evaluate_model(
                    model, cfg, device=device, max_images=tr.eval_max_images, output_json=run_dir / "results_val.json"
                )
                ap = float(stats["AP"])
                metrics.update({f"val/{k}": float(v) for k, v in stats.items()})
                if writer is not None:
                    for k, v in stats.items():
                        writer.add_scalar(f"val/{k}", float(v), step)
                log.info("epoch %d: val AP %.4f", epoch, ap)
                summary["ap"] = ap
                if ap > best_ap:
                    best_ap = ap
                    metrics["best_ap"] = best_ap
                    save_checkpoint(state(epoch_done, metrics), run_dir / "best.pt")
            metrics["best_ap"] = best_ap
            if dist_info.is_main:
                save_checkpoint(state(epoch_done, metrics), run_dir / "last.pt")
                if writer is not None:
                    writer.flush()
    finally:
        if writer is not None:
            writer.close()
        if dist_info.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    summary.update(step=step, best_ap=best_ap, last=str(run_dir / "last.pt"), **means)
    if dist_info.is_main:
        log.info("done: %d steps, last checkpoint %s", step, run_dir / "last.pt")
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    """Hydra entry point (see module docstring)."""
    try:
        run(cfg)
    except NonFiniteLossError as e:
        log.error("%s", e)
        sys.exit(3)


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    main()

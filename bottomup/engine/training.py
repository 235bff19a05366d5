"""One training run from plain objects: device and processes, seeds, resume, the in-training estimator, TensorBoard,
DDP / ``torch.compile`` wrapping, then :func:`bottomup.engine.trainer.fit`.

``bottomup.build.training_job`` turns a composed config into the :class:`TrainingJob` this module runs;
``bottomup.api.train`` (the body of ``python -m bottomup.train``) joins the two. Nothing here reads a config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from bottomup.core.keypoints import KeypointLayout
from bottomup.data.dataset import KeypointDataset
from bottomup.engine.checkpoint import CheckpointError, remove_stale_temporaries
from bottomup.engine.distributed import DistInfo, evaluation_shard, init_distributed
from bottomup.engine.estimator import PoseEstimator
from bottomup.engine.evaluator import ValSet, evaluate_model
from bottomup.engine.settings import TestSettings, TrainerSettings
from bottomup.engine.trainer import EpochSampler, TrainLogger, TrainState, fit
from bottomup.models.precision import AUTO, measured_precision, resolve_precision
from bottomup.models.weights import describe_weights, mismatch_summary

log = logging.getLogger("bottomup.train")

__all__ = ["RunContext", "TrainingJob", "InTraining", "run_training", "wrap_model"]


@dataclass(frozen=True)
class RunContext:
    """What a run knows once its processes are up, before anything is built: the process group, the device and
    the precision that runs (``trainer.precision=auto`` resolved on that device)."""

    dist_info: DistInfo
    device: torch.device
    precision: str


@dataclass
class TrainingJob:
    """Everything one training run needs, built on a :class:`RunContext` (``bottomup.build.training_job``).

    Attributes:
        run_dir: where checkpoints, ``results_val.json`` and ``tb/`` go (a resumed run: the checkpoint's folder).
        dataset: the training set (samples of :mod:`bottomup.data.batch`).
        model: the network, on the CPU, not yet wrapped (weights initialised or fine-tuning weights loaded).
        loss: the criterion (``bottomup.models.losses``), ``loss(outputs, batch) -> {"loss", parts...}``.
        make_loader: ``(dataset, dist_info, device) -> (DataLoader, EpochSampler)``.
        make_state: ``(model, iters_per_epoch, device) -> TrainState`` (optimiser, schedule, scaler, saved config).
        layout: the keypoint layout of the data.
        test: the test-time settings of in-training evaluation and pictures.
        val: the validation set of in-training evaluation.
        snapshot_sample: ``() -> sample`` (``image``, ``heatmaps`` at each stride) of the first validation image,
            the picture of ``trainer.image_every``; called on first use.
        resume: a loaded training checkpoint to continue (``resume=``), or ``None``.
        resume_path: its file (named in messages).
        resume_changes: ``(checkpoint) -> ["key: old -> new", ...]``, the settings that differ from the run the
            checkpoint was written by (logged).
    """

    run_dir: Path
    dataset: KeypointDataset
    model: nn.Module
    loss: nn.Module
    make_loader: Callable[[KeypointDataset, DistInfo, torch.device], tuple[DataLoader, EpochSampler]]
    make_state: Callable[[nn.Module, int, torch.device], TrainState]
    layout: KeypointLayout
    test: TestSettings
    val: ValSet
    snapshot_sample: Callable[[], Mapping[str, Any]]
    resume: dict[str, Any] | None = None
    resume_path: str = ""
    resume_changes: Callable[[Mapping[str, Any]], Sequence[str]] = lambda checkpoint: ()


class InTraining:
    """The estimator of in-training evaluation and pictures: the test settings on the training network itself,
    built once (``TorchBackend(follow=True)``: the training network's memory format is never changed; a folded /
    compiled copy is made once and refreshed in place before each use, never copied or compiled again).

    Args:
        model: the training network (unwrapped).
        layout: its keypoint layout.
        settings: the test-time settings (``test.*``).
        device: where it runs.
    """

    def __init__(self, model: nn.Module, layout: KeypointLayout, settings: TestSettings, device: torch.device) -> None:
        self.model, self.layout, self.settings, self.device = model, layout, settings, device
        self._estimator: PoseEstimator | None = None

    def estimator(self) -> PoseEstimator:
        """The estimator, its copy (if any) up to date with the network's weights; the network in eval mode."""
        from bottomup.engine.inference import TorchBackend

        if self._estimator is None:
            backend = TorchBackend(self.model, self.settings, device=self.device, follow=True)
            self._estimator = PoseEstimator(backend, layout=self.layout)
        else:
            self._estimator.backend.refresh()
        return self._estimator

    def snapshot_fn(self, sample: Callable[[], Mapping[str, Any]]) -> Callable[[], dict[str, np.ndarray]]:
        """``() -> pictures`` of ``sample()`` (drawn on first use, then kept) for ``trainer.image_every``."""
        from bottomup.engine.explain import training_snapshot

        fixed: dict[str, Any] = {}

        def snapshot() -> dict[str, np.ndarray]:
            if not fixed:
                fixed.update(sample())
            was_training = self.model.training
            try:
                estimator = self.estimator().with_settings(flip_test=False, scales=[1.0])
                return training_snapshot(estimator, fixed["image"], fixed["heatmaps"][-1])
            finally:
                self.model.train(was_training)

        return snapshot


def run_training(
    settings: TrainerSettings,
    seed: int,
    setup: Callable[[RunContext], TrainingJob],
    probe_model: Callable[[], nn.Module] | None = None,
) -> dict[str, Any]:
    """Run one training: start the processes (``torchrun``) and pick the device, resolve ``precision=auto``, seed
    (``seed + rank``), build the job with ``setup``, resume it, then :func:`~bottomup.engine.trainer.fit` with
    evaluation every ``settings.eval_every`` epochs and TensorBoard in ``<run dir>/tb``.

    Args:
        settings: the trainer settings (``trainer.*``).
        seed: the run's seed (``seed``): torch and NumPy get ``seed + rank``; the data set's augmentation draws from
            ``(seed, epoch, index)``.
        setup: builds the job once the :class:`RunContext` is known (the model is built after seeding, so that
            its initial weights follow ``seed``).
        probe_model: ``() -> network`` like the job's (built before seeding, used only by
            ``trainer.precision=auto``): rank 0 times a training step of it in fp32 and bf16 and every rank runs the
            faster one that computes correctly (``bottomup.models.precision.measured_precision``, cached per machine,
            torch version and network). Without it ``auto`` follows the device's bf16 flag.

    Returns:
        ``{"run_dir", "start_step", "step", "best_ap", "last", "ap"?, <last epoch's mean losses>}``.

    Raises:
        ValueError: a device that is not available; what ``setup`` raises.
        bottomup.engine.checkpoint.CheckpointError: a resume checkpoint whose weights do not fit the model.
        bottomup.engine.trainer.NonFiniteLossError: the loss became NaN / inf (the last good checkpoint is kept).
    """
    dist_info, device = init_distributed(settings.device, timeout_s=settings.dist_timeout)
    precision = resolve_precision(settings.precision, device, "trainer.precision")
    if settings.precision == AUTO and probe_model is not None:
        precision = _measured_precision(probe_model, device, dist_info)
    elif settings.precision == AUTO and dist_info.is_main:
        log.info("trainer.precision=auto: %s on %s", precision, device)
    torch.manual_seed(seed + dist_info.rank)
    np.random.seed(seed + dist_info.rank)  # the global generator is saved in checkpoints

    job = setup(RunContext(dist_info, device, precision))
    model, dataset = job.model, job.dataset
    model.to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader, sampler = job.make_loader(dataset, dist_info, device)
    iters_per_epoch = len(loader) if settings.steps_per_epoch is None else min(len(loader), settings.steps_per_epoch)
    state = job.make_state(model, iters_per_epoch, device)
    run_dir = job.run_dir
    if job.resume is not None:
        _resume(state, job, is_main=dist_info.is_main, rank=dist_info.rank)
    if dist_info.is_main:
        for tmp in remove_stale_temporaries(run_dir):
            log.info("removed %s, left by an interrupted checkpoint write", tmp)
    in_training = InTraining(model, job.layout, job.test, device)
    logger = _make_logger(
        settings, run_dir, purge_step=state.step if job.resume is not None else None, is_main=dist_info.is_main,
        snapshot=in_training.snapshot_fn(job.snapshot_sample),
    )  # fmt: skip
    if dist_info.is_main:
        log.info(
            "training %s on %s (%d process%s), %d images, %d iterations/epoch, run dir %s",
            type(model).__name__, device, dist_info.world_size, "es" if dist_info.world_size > 1 else "",
            len(dataset), iters_per_epoch, run_dir,
        )  # fmt: skip

    shard = evaluation_shard(dist_info)  # each rank evaluates its share of the images

    def evaluate_now() -> dict[str, float]:
        was_training = model.training
        try:
            estimator = in_training.estimator()  # puts the network in eval mode
            return evaluate_model(
                estimator,
                job.val,
                output_json=run_dir / "results_val.json",
                max_images=settings.eval_max_images,
                progress=settings.progress,
                shard=shard,
            )
        finally:
            model.train(was_training)

    summary: dict[str, Any] = {"run_dir": str(run_dir), "start_step": state.step}
    try:
        summary.update(
            fit(
                wrap_model(model, settings, dist_info, device),
                job.loss,
                state,
                loader,
                sampler,
                device,
                run_dir,
                epochs=settings.epochs,
                iters_per_epoch=iters_per_epoch,
                max_steps=settings.max_steps,
                evaluate=evaluate_now,
                eval_every=settings.eval_every,
                is_main=dist_info.is_main,
                logger=logger,
                precision=precision,
                grad_clip=settings.grad_clip,
                channels_last=settings.channels_last,
            )  # fmt: skip
        )
    finally:
        logger.close()
        if dist_info.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if dist_info.is_main:
        log.info("done: %d steps, last checkpoint %s", state.step, summary["last"])
    return summary


def _measured_precision(probe_model: Callable[[], nn.Module], device: torch.device, dist_info: DistInfo) -> str:
    """``trainer.precision=auto`` by measurement on rank 0 (:func:`~bottomup.models.precision.measured_precision`),
    the choice sent to every rank."""
    choice = None
    if dist_info.is_main:
        choice, record = measured_precision(probe_model().to(device), device)
        timings = ", ".join(f"{k} {v:.1f} ms" for k, v in record["timings_ms"].items())
        log.info(
            "trainer.precision=auto: %s on %s (%s%s)", choice, device,
            f"training step at 128 px: {timings}" if timings else "no native bf16: fp32 without a probe",
            ", the choice cached earlier for this machine" if record["cached"] else "",
        )  # fmt: skip
    if dist_info.enabled and torch.distributed.is_initialized():
        box = [choice]
        torch.distributed.broadcast_object_list(box, src=0)
        choice = box[0]
    return str(choice)


def _resume(state: TrainState, job: TrainingJob, is_main: bool, rank: int = 0) -> None:
    """Load ``job.resume`` into ``state`` in the process of rank ``rank`` (the current hyperparameters stay); log
    what differs.

    Raises:
        CheckpointError: weights that do not fit the model.
    """
    checkpoint = job.resume
    assert checkpoint is not None
    try:
        state.load_state_dict(checkpoint, rank=rank)
    except RuntimeError as e:
        raise CheckpointError(
            f"resume={job.resume_path} does not fit the model of the config: {mismatch_summary(e)}; the file is "
            f"{describe_weights(checkpoint['model'])}, the config builds "
            f"{describe_weights(state.model.state_dict())}. Resume with the settings the run was started with "
            "(its .hydra/overrides.yaml: model.*, data=...)"
        ) from e
    if is_main:
        n = state.batch
        inside = f", {n} batch{'' if n == 1 else 'es'} of epoch {state.epoch} already trained" if n else ""
        log.info(
            "resuming from %s: epoch %d, step %d%s (writing into %s)",
            job.resume_path,
            state.epoch,
            state.step,
            inside,
            job.run_dir,
        )
        changed = list(job.resume_changes(checkpoint))
        if changed:
            log.info("resume: settings that differ from the checkpoint's, applied from now on: %s", "; ".join(changed))


def _make_logger(
    settings: TrainerSettings,
    run_dir: Path,
    purge_step: int | None,
    is_main: bool,
    snapshot: Callable[[], dict[str, np.ndarray]],
) -> TrainLogger:
    """TensorBoard in ``<run_dir>/tb`` with the ``trainer.*`` logging settings on rank 0; a bar-less, writer-less
    logger on the other ranks."""
    if not is_main:
        return TrainLogger(progress=False)
    from torch.utils.tensorboard import SummaryWriter

    return TrainLogger(
        writer=SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge_step),
        log_every=settings.log_every,
        image_every=settings.image_every,
        snapshot=snapshot,
        progress=settings.progress,
    )


def wrap_model(model: nn.Module, settings: TrainerSettings, dist_info: DistInfo, device: torch.device) -> nn.Module:
    """The module the loop runs: SyncBatchNorm + DDP under ``torchrun`` (``sync_bn`` on CUDA only), then
    ``torch.compile`` if ``settings.compile``."""
    out = model
    if dist_info.enabled:
        if settings.sync_bn and device.type == "cuda":
            out = torch.nn.SyncBatchNorm.convert_sync_batchnorm(out)
        elif settings.sync_bn and dist_info.is_main:
            log.warning("trainer.sync_bn=true ignored: PyTorch's SyncBatchNorm runs on CUDA only")
        out = torch.nn.parallel.DistributedDataParallel(
            out, device_ids=[device.index] if device.type == "cuda" else None
        )
    if settings.compile:
        out = torch.compile(out)
    return out

"""Python API: ``PoseEstimator`` (image in, people out), and ``train`` / ``evaluate`` (what the entry points run).

Example::

    from bottomup import PoseEstimator

    estimator = PoseEstimator.from_checkpoint("outputs/.../best.pt")
    pred = estimator("photo.jpg")
    pred.keypoints  # (N, K, 3): x, y in original-image pixels, keypoint score
    pred.scores     # (N,) person scores
    pred.boxes      # (N, 4) x0, y0, x1, y1 around each person's joints
    for person in pred[pred.scores > 0.2]:
        print(person.score, person["left_wrist"])
    pred.save("people.png")                   # the picture (also .plot() -> RGB array)
    pred.to_json("people.json", image_id=1)   # COCO keypoint results

Videos, cameras, streams: ``for result in estimator.track("clip.mp4"): result.track_ids, result.prediction``
(:class:`FrameResult` per frame; ``bottomup.engine.tracking.PoseTracker`` gives the ids).

Arrays are RGB by default; frames from OpenCV (``cv2.imread``, ``cv2.VideoCapture``) are BGR: pass
``color="bgr"`` (``PoseEstimator.from_checkpoint(..., color="bgr")``).

``train(cfg)`` / ``evaluate(cfg)`` take a composed config (``bottomup.build.compose("train" | "eval", [...])``)
and are the bodies of ``python -m bottomup.train`` / ``python -m bottomup.evaluate``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from bottomup import build
from bottomup.codec import GROUPING_KEYS
from bottomup.core.keypoints import KeypointLayout
from bottomup.deploy.runtime import SUFFIX_BACKEND, ExportedBackend
from bottomup.engine import estimator as _estimator
from bottomup.engine.checkpoint import CheckpointError, remove_stale_temporaries
from bottomup.engine.distributed import init_distributed, resolve_device
from bottomup.engine.estimator import FrameResult
from bottomup.engine.evaluator import evaluate_model
from bottomup.engine.people import Prediction
from bottomup.engine.settings import TestSettings
from bottomup.engine.trainer import TrainLogger, TrainState, fit
from bottomup.models.precision import AUTO, resolve_precision
from bottomup.vis.draw import PLOT_DEFAULTS

log = logging.getLogger("bottomup.train")

#: Model-file suffixes of exported models (``python -m bottomup.export``).
EXPORTED_SUFFIXES = tuple(SUFFIX_BACKEND)

__all__ = ["Prediction", "PoseEstimator", "PLOT_DEFAULTS", "GROUPING_KEYS", "TestSettings", "train", "evaluate"]
__all__ += [
    "FrameResult",
    "ExportedPoseEstimator",
    "evaluate_tracking",
]  # videos: PoseEstimator.track yields FrameResult


class PoseEstimator(_estimator.PoseEstimator):
    """Bottom-up multi-person pose estimation with the official HigherHRNet test-time pipeline, on any backend.

    :class:`bottomup.engine.estimator.PoseEstimator` (read, ``__call__``, ``run``, ``track``, ``with_settings``;
    a torch network or a ``Backend`` given to the constructor, with ``layout``, ``settings`` and test / grouping
    keys) with the constructors that read configs and files: :meth:`from_config`, :meth:`from_checkpoint` (a
    checkpoint, or an exported model) and :meth:`from_exported` all return this class. Calling it on an image
    (path, or ``(H, W, 3)`` uint8 array: RGB, or BGR with ``color="bgr"``) returns a :class:`Prediction` in
    original-image pixels; ``run`` also returns the maps (``bottomup.engine.explain`` shows them).

    Raises:
        ValueError: unknown settings keys, precision or device, or an inconsistent layout.
    """

    @classmethod
    def from_config(cls, cfg: Any, model: torch.nn.Module | None = None, **overrides: Any) -> PoseEstimator:
        """Build from a (resolved or composed) project config: ``cfg.model`` (built with
        ``bottomup.build.build_model`` when ``model`` is not given), ``cfg.data`` (layout, ``input_size``) and
        ``cfg.test`` (test-time settings, ``bottomup.build.test_settings``). ``overrides`` replace constructor
        arguments (``device``, ``color``) or test / grouping keys (``input_size``, ``scales``, ``flip_test``, ...).

        Raises:
            ValueError: as the constructor, or a model whose K differs from the data's.
        """
        cfg = build.as_config(cfg)
        if model is None:
            model = build.build_model(cfg.model, pretrained=False)
        return build.estimator_from_config(cfg, model, cls=cls, **overrides)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        experiment: str | None = None,
        device: str | torch.device | None = None,
        backend: str = "torch",
        **overrides: Any,
    ) -> PoseEstimator:
        """Load a project checkpoint or an official HigherHRNet ``.pth`` (``bottomup.build.load_model``).

        An exported model (``.onnx`` / OpenVINO ``.xml`` from ``python -m bottomup.export``), or ``backend``
        ``"onnxruntime"`` / ``"openvino"``, gives :meth:`from_exported` instead (the same class).

        * Project checkpoint (``last.pt`` / ``best.pt``): the network, layout and test settings come from the
          config saved in it; ``experiment`` is used only if it has none.
        * Official checkpoint (raw state_dict, e.g. ``pose_higher_hrnet_w32_512.pth``): needs ``experiment``
          (e.g. ``"higherhrnet_w32"``) to build the matching model and settings.

        Args:
            path: local file (loaded with ``torch.load(weights_only=True)`` on CPU).
            experiment: name in ``conf/experiment``.
            device: where to run.
            backend: ``"torch"`` (default) runs the checkpoint; ``"onnxruntime"`` / ``"openvino"`` an exported file.
            **overrides: test / grouping keys (``input_size``, ``scales``, ``flip_test``, ``detection_threshold``,
                ...) replacing the checkpoint's, and ``color``.

        Raises:
            FileNotFoundError: missing file.
            bottomup.engine.checkpoint.CheckpointError: not a loadable weights-only checkpoint, or test settings
                saved in it that are out of range (the message names the file and the key).
            ValueError: an official checkpoint without ``experiment``; an override out of range.
            RuntimeError: weights that do not fit the configured model (message lists the mismatches).
        """
        if backend != "torch" or Path(path).suffix in EXPORTED_SUFFIXES:
            return cls.from_exported(path, backend=None if backend == "torch" else backend, **overrides)
        info: dict[str, Any] = {}
        model, cfg, _ = build.load_model(path, experiment=experiment, info=info)
        try:
            settings = build.test_settings(cfg)
        except ValueError as e:
            raise CheckpointError(f"{path}: its saved test settings do not load ({e})") from e
        color = overrides.pop("color", "rgb")
        estimator = cls(
            model,
            layout=KeypointLayout.from_config(cfg.data),
            settings=settings,
            device=device,
            color=color,
            summary=info["summary"],
            trained_on=str(cfg.data.get("name", "")),
        )
        return estimator.with_settings(**overrides) if overrides else estimator

    @classmethod
    def from_exported(cls, path: str | os.PathLike, *, backend: str | None = None, **settings: Any) -> PoseEstimator:
        """An exported model (``python -m bottomup.export``) on ONNX Runtime or OpenVINO.

        This module imports torch; ``bottomup.deploy.runtime.DeployedPoseEstimator`` is the same estimator without
        it.

        Args:
            path: ``*.onnx`` or ``*.xml`` with its JSON beside it.
            backend: ``"onnxruntime"`` or ``"openvino"``; default by the suffix.
            **settings: ``threads``, ``color``, and host grouping keys (``detection_threshold``, ...).

        Raises:
            bottomup.deploy.runtime.ModelFileError: missing / mismatched model file or JSON (named).
            ImportError: the backend's package is missing (names the ``deploy`` extra).
            ValueError: a key the exported graph holds, or an unknown one.
        """
        threads = settings.pop("threads", None)
        color = settings.pop("color", "rgb")
        exported = ExportedBackend(path, backend=backend, threads=threads)
        return cls(
            exported,
            layout=exported.layout,
            color=color,
            summary=exported.summary,
            trained_on=exported.trained_on,
            **settings,
        )


#: What :meth:`PoseEstimator.from_exported` returns: the same class (kept as a name for older code).
ExportedPoseEstimator = PoseEstimator


def evaluate_tracking(
    estimator: PoseEstimator,
    video: Iterable[Any],
    *,
    fps: float | None = None,
    min_score: float = 0.0,
    min_oks: float = 0.5,
    **tracker_settings: Any,
) -> dict[str, float]:
    """MOTA, IDF1, identity switches, ... of ``estimator.track`` on a video with ground-truth identities.

    Args:
        estimator: the model and its test settings.
        video: frames with ground truth, e.g. ``bottomup.data.synthetic_video.SyntheticVideo``: each with
            ``image`` ``(H, W, 3)`` uint8 BGR, ``ids (G,)``, ``keypoints (G, K, 3)`` (x, y, visibility) and
            ``areas (G,)`` pixels.
        fps: frame rate (default: ``video.fps``, else 30).
        min_score: people below this score are dropped before tracking (and scoring).
        min_oks: least OKS of a match to the ground truth (``bottomup.engine.tracking.tracking_metrics``).
        **tracker_settings: ``PoseTracker`` arguments (``max_age``, ``smoothing``, ...).

    Returns:
        the dict of :func:`bottomup.engine.tracking.tracking_metrics` (``mota``, ``idf1``, ``num_switches``, ...).
    """
    from collections import deque

    from bottomup.engine.tracking import tracking_metrics

    truth: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque()

    def images() -> Iterator[np.ndarray]:
        for frame in video:
            truth.append((frame.ids, frame.keypoints, frame.areas))
            yield frame.image if estimator.color == "bgr" else np.ascontiguousarray(frame.image[..., ::-1])

    rate = float(fps if fps is not None else getattr(video, "fps", 30.0))

    def rows() -> Iterator[tuple[np.ndarray, ...]]:
        for result in estimator.track(images(), fps=rate, min_score=min_score, **tracker_settings):
            ids, kpts, areas = truth.popleft()
            yield ids, kpts, areas, result.track_ids, result.prediction.keypoints

    return tracking_metrics(rows(), estimator.layout.oks_sigmas, min_oks=min_oks)


# ----------------------------------------------------------------------------------------------------- train
class _InTraining:
    """The estimator of in-training evaluation and pictures: ``cfg.test`` on the training network itself, built
    once (``TorchBackend(follow=True)``: the training network's memory format is never changed; a folded /
    compiled copy is made once and refreshed in place before each use, never copied or compiled again)."""

    def __init__(self, cfg: DictConfig, model: torch.nn.Module, device: torch.device) -> None:
        self.cfg, self.model, self.device = cfg, model, device
        self.layout = KeypointLayout.from_config(cfg.data)
        self._estimator: PoseEstimator | None = None

    def estimator(self) -> PoseEstimator:
        """The estimator, its copy (if any) up to date with the network's weights; the network in eval mode."""
        from bottomup.engine.inference import TorchBackend

        if self._estimator is None:
            backend = TorchBackend(self.model, build.test_settings(self.cfg), device=self.device, follow=True)
            self._estimator = PoseEstimator(backend, layout=self.layout)
        else:
            self._estimator.backend.refresh()
        return self._estimator

    def snapshot_fn(self) -> Any:
        """``() -> pictures`` of the first validation image (built on first use) for ``trainer.image_every``."""
        from bottomup.engine.explain import training_snapshot

        cfg, fixed = self.cfg, {}

        def snapshot() -> dict[str, np.ndarray]:
            if not fixed:
                val_cfg = OmegaConf.merge(
                    cfg.data, {"train_ann": cfg.data.val_ann, "train_images": cfg.data.val_images}
                )
                fixed.update(build.build_train_dataset(val_cfg, cfg.model.strides, train=False).sample(0))
            was_training = self.model.training
            try:
                estimator = self.estimator().with_settings(flip_test=False, scales=[1.0])
                return training_snapshot(estimator, fixed["image"], fixed["heatmaps"][-1])
            finally:
                self.model.train(was_training)

        return snapshot


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train as ``cfg`` (``conf/train.yaml`` composed) says: the body of ``python -m bottomup.train``.

    Builds the data set, model, loss, optimiser and schedule (``bottomup.build``), resumes from ``cfg.resume``
    (weights, optimiser, schedule, counters, random states; written into the checkpoint's folder), wraps the
    model for DDP / ``torch.compile``, and runs ``bottomup.engine.trainer.fit`` with evaluation every
    ``trainer.eval_every`` epochs and TensorBoard in ``<run dir>/tb``.

    Returns:
        ``{"run_dir", "start_step", "step", "best_ap", "last", "ap"?, <last epoch's mean losses>}``.

    Raises:
        ValueError / FileNotFoundError: bad data root, batch size, precision or device (the message names the key).
        bottomup.engine.trainer.NonFiniteLossError: the loss became NaN / inf (the last good checkpoint is kept).
    """
    build.prepare_data_root(cfg.data)
    tr = cfg.trainer
    resolve_precision(str(tr.precision), "cpu", "trainer.precision")  # a bad name fails before anything starts
    for key in ("epochs", "steps_per_epoch", "max_steps", "log_every"):
        if tr.get(key) is not None and int(tr[key]) < 1:
            raise ValueError(f"trainer.{key} must be >= 1 (or null where allowed), got {tr[key]}")
    for key in ("image_every", "eval_every"):
        if int(tr.get(key) or 0) < 0:
            raise ValueError(f"trainer.{key} must be >= 0 (0 = off), got {tr[key]}")
    dist_info, device = init_distributed(str(tr.device), timeout_s=float(tr.dist_timeout))
    if str(tr.precision) == AUTO:
        with open_dict(cfg):  # the saved config says what ran
            tr.precision = resolve_precision(AUTO, device, "trainer.precision")
        if dist_info.is_main:
            log.info("trainer.precision=auto: %s on %s", tr.precision, device)
    seed = int(cfg.seed)
    torch.manual_seed(seed + dist_info.rank)
    np.random.seed(seed + dist_info.rank)  # the global generator is saved in checkpoints

    dataset = build.build_train_dataset(cfg.data, cfg.model.strides, train=True, seed=seed)
    finetune = cfg.get("checkpoint") if not cfg.resume else None
    model = build.build_model(cfg.model, int(cfg.data.num_keypoints), pretrained=not finetune)
    if finetune:
        build.load_initial_weights(model, str(finetune))
    elif cfg.get("checkpoint") and dist_info.is_main:
        log.info("resume= given: checkpoint=%s is not loaded (the run continues from its last.pt)", cfg.checkpoint)
    if getattr(model, "num_keypoints", None) not in (None, dataset.num_keypoints):
        raise ValueError(
            f"model predicts {model.num_keypoints} keypoints but {cfg.data.train_ann} has {dataset.num_keypoints}"
        )
    model.to(device)
    if tr.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader, sampler = build.build_train_loader(dataset, cfg.data, dist_info, seed, device)
    iters_per_epoch = len(loader) if tr.steps_per_epoch is None else min(len(loader), int(tr.steps_per_epoch))
    state = build.build_train_state(cfg, model, iters_per_epoch, device)
    run_dir = Path(str(cfg.output_dir))
    if cfg.resume:
        run_dir = Path(str(cfg.resume)).resolve().parent
        _resume(state, cfg, is_main=dist_info.is_main, rank=dist_info.rank)
    if dist_info.is_main:
        for tmp in remove_stale_temporaries(run_dir):
            log.info("removed %s, left by an interrupted checkpoint write", tmp)
    in_training = _InTraining(cfg, model, device)
    logger = _make_logger(
        cfg, run_dir, purge_step=state.step if cfg.resume else None, is_main=dist_info.is_main, snapshot=in_training
    )
    if dist_info.is_main:
        log.info(
            "training %s on %s (%d process%s), %d images, %d iterations/epoch, run dir %s",
            type(model).__name__, device, dist_info.world_size, "es" if dist_info.world_size > 1 else "",
            len(dataset), iters_per_epoch, run_dir,
        )  # fmt: skip

    val = build.val_set(cfg)

    def evaluate_now() -> dict[str, float]:
        was_training = model.training
        try:
            estimator = in_training.estimator()  # puts the network in eval mode
            return evaluate_model(
                estimator, val, output_json=run_dir / "results_val.json", max_images=tr.eval_max_images
            )
        finally:
            model.train(was_training)

    summary: dict[str, Any] = {"run_dir": str(run_dir), "start_step": state.step}
    try:
        summary.update(
            fit(
                _wrap(model, cfg, dist_info, device),
                build.build_loss(cfg.loss),
                state,
                loader,
                sampler,
                device,
                run_dir,
                epochs=int(tr.epochs),
                iters_per_epoch=iters_per_epoch,
                max_steps=tr.max_steps,
                evaluate=evaluate_now,
                eval_every=int(tr.eval_every or 0),
                is_main=dist_info.is_main,
                logger=logger,
                precision=str(tr.precision),
                grad_clip=tr.grad_clip,
                channels_last=bool(tr.channels_last),
            )  # fmt: skip
        )
    finally:
        logger.close()
        if dist_info.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if dist_info.is_main:
        log.info("done: %d steps, last checkpoint %s", state.step, summary["last"])
    return summary


def _resume(state: TrainState, cfg: DictConfig, is_main: bool, rank: int = 0) -> None:
    """Load ``cfg.resume`` into ``state`` in the process of rank ``rank``, keeping the current config's
    hyperparameters; log what differs.

    Raises:
        CheckpointError: not a training checkpoint of this project, or weights that do not fit the model.
    """
    checkpoint = build.load_resume_checkpoint(str(cfg.resume))
    try:
        state.load_state_dict(checkpoint, rank=rank)
    except RuntimeError as e:
        raise CheckpointError(
            f"resume={cfg.resume} does not fit the model of the config: {build.mismatch_summary(e)}; the file is "
            f"{build.describe_weights(checkpoint['model'])}, the config builds "
            f"{build.describe_weights(state.model.state_dict())}. Resume with the settings the run was started with "
            "(its .hydra/overrides.yaml: model.*, data=...)"
        ) from e
    if is_main:
        where = Path(str(cfg.resume)).resolve().parent
        n = state.batch
        inside = f", {n} batch{'' if n == 1 else 'es'} of epoch {state.epoch} already trained" if n else ""
        log.info(
            "resuming from %s: epoch %d, step %d%s (writing into %s)",
            cfg.resume,
            state.epoch,
            state.step,
            inside,
            where,
        )
        changed = build.config_differences(checkpoint.get("config", ""), cfg)
        if changed:
            log.info("resume: settings that differ from the checkpoint's, applied from now on: %s", "; ".join(changed))


def _make_logger(
    cfg: DictConfig, run_dir: Path, purge_step: int | None, is_main: bool, snapshot: _InTraining
) -> TrainLogger:
    """TensorBoard in ``<run_dir>/tb`` with the ``trainer.*`` logging settings on rank 0; a bar-less, writer-less
    logger on the other ranks."""
    tr = cfg.trainer
    if not is_main:
        return TrainLogger(progress=False)
    from torch.utils.tensorboard import SummaryWriter

    return TrainLogger(
        writer=SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge_step),
        log_every=int(tr.log_every),
        image_every=int(tr.image_every or 0),
        snapshot=snapshot.snapshot_fn(),
        progress=bool(tr.progress),
    )


def _wrap(model: torch.nn.Module, cfg: DictConfig, dist_info: Any, device: torch.device) -> torch.nn.Module:
    """The module the loop runs: SyncBatchNorm + DDP under ``torchrun``, then ``torch.compile`` if asked."""
    tr = cfg.trainer
    out = model
    if dist_info.enabled:
        if tr.sync_bn and device.type == "cuda":
            out = torch.nn.SyncBatchNorm.convert_sync_batchnorm(out)
        elif tr.sync_bn and dist_info.is_main:
            log.warning("trainer.sync_bn=true ignored: PyTorch's SyncBatchNorm runs on CUDA only")
        out = torch.nn.parallel.DistributedDataParallel(
            out, device_ids=[device.index] if device.type == "cuda" else None
        )
    if tr.compile:
        out = torch.compile(out)
    return out


# -------------------------------------------------------------------------------------------------- evaluate
def _synthetic_set_of_checkpoint(cfg: DictConfig, ran: DictConfig, given: set[str]) -> None:
    """For a generated data set (``data=synthetic`` with no ``data.root``) and no ``data.synthetic.*`` in
    ``given``: evaluate on the synthetic set the checkpoint was trained with (the quickstart's has at most 4 people
    per image, the data config's default 5: another set, another AP)."""
    saved = OmegaConf.select(ran, "data.synthetic")
    if saved is None or any(k.startswith("data.synthetic") for k in given):
        return
    if OmegaConf.to_container(saved, resolve=True) != OmegaConf.to_container(cfg.data.synthetic, resolve=True):
        log.info(
            "data.synthetic: the checkpoint's generated set (%s), not the data config's; set data.synthetic.* to "
            "evaluate on another", ", ".join(f"{k}={v}" for k, v in OmegaConf.to_container(saved).items()),
        )  # fmt: skip
        cfg.data.synthetic = saved


def evaluate(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Evaluate ``cfg.checkpoint`` on ``cfg.data``'s validation set (``conf/eval.yaml`` composed): the body of
    ``python -m bottomup.evaluate``.

    The network comes from ``bottomup.build.load_model`` (the config saved in a project checkpoint, else
    ``cfg.model`` for an official ``.pth``); the data set, layout and test-time settings (``cfg.test``) from
    ``cfg``, except that a project checkpoint's test-time input size (its training scale) is used unless
    ``overrides`` sets ``test.input_size`` or ``data.input_size``, and with ``data=synthetic`` the generated set it
    was trained on unless ``overrides`` sets ``data.root`` or ``data.synthetic.*``. Writes into ``cfg.output_dir``:
    ``results_val.json`` (COCO results), ``metrics.json`` (the AP table, checkpoint, model, input size) and
    ``config.yaml`` (the config that ran, network included; ``.hydra/config.yaml`` is replaced by it too).

    Args:
        cfg: the composed ``eval`` config.
        overrides: the command line's ``key=value`` overrides (Hydra's task overrides), to tell settings given
            there from the data config's defaults.

    Raises:
        ValueError: ``checkpoint`` or ``data.root`` not set, or a model whose K differs from the data's.
        FileNotFoundError / bottomup.engine.checkpoint.CheckpointError: the checkpoint cannot be read.
    """
    from bottomup.core.io import write_json

    if OmegaConf.is_missing(cfg, "checkpoint") or not cfg.get("checkpoint"):
        raise ValueError(
            "checkpoint is not set: pass checkpoint=PATH (a last.pt / best.pt of this project, or an official "
            "HigherHRNet .pth with the matching experiment=...)"
        )
    generated = cfg.data.get("root") is None and cfg.data.get("synthetic") is not None
    if not generated:  # a generated set is made once the checkpoint has said which one
        build.prepare_data_root(cfg.data)
    device = resolve_device(str(cfg.get("device", "auto")), key="device")
    path = str(cfg.checkpoint)
    info: dict[str, Any] = {}
    model, ran, kind = build.load_model(path, cfg=cfg, info=info)
    log.info("loaded %s checkpoint %s: %s", kind, path, info["summary"])
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    if kind == "project":
        with open_dict(cfg):
            cfg.model = ran.model  # the saved config records the network that ran
            if generated:
                _synthetic_set_of_checkpoint(cfg, ran, given)
            trained = build.config_test_group(ran).get("input_size") or OmegaConf.select(ran, "data.input_size")
            if trained is not None and not given & {"test.input_size", "data.input_size"}:
                if int(trained) != int(cfg.test.input_size):
                    log.info(
                        "test.input_size=%d, the checkpoint's (the data config says %d; set test.input_size=N to "
                        "change it)", int(trained), int(cfg.test.input_size),
                    )  # fmt: skip
                cfg.test.input_size = int(trained)
    if generated:
        build.prepare_data_root(cfg.data)
    model.to(device)
    out_dir = Path(str(cfg.output_dir))
    output_json = out_dir / "results_val.json"
    stats = evaluate_model(
        build.estimator_from_config(cfg, model, cls=PoseEstimator, device=device),
        build.val_set(cfg),
        output_json=output_json,
        max_images=cfg.get("max_images"),
        progress=bool(cfg.get("progress", True)),
    )
    text = OmegaConf.to_yaml(cfg)
    (out_dir / "config.yaml").write_text(text)
    if (out_dir / ".hydra" / "config.yaml").is_file():
        (out_dir / ".hydra" / "config.yaml").write_text(text)
    metrics = write_json(
        out_dir / "metrics.json",
        {
            "checkpoint": path,
            "model": info["summary"],
            "data": str(cfg.data.get("name")),
            "val_ann": str(cfg.data.val_ann),
            "max_images": cfg.get("max_images"),
            "test": OmegaConf.to_container(cfg.test, resolve=True),
            "metrics": {k: float(v) for k, v in stats.items()},
        },
    )
    print("\n" + "  ".join(f"{k} {v:.4f}" for k, v in stats.items()))
    print(f"results: {output_json}, metrics: {metrics}")
    return stats

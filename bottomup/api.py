"""Python API: ``PoseEstimator`` (image in, people out), and ``train`` / ``evaluate`` (what the entry points run).

Example::

    from bottomup import PoseEstimator

    estimator = PoseEstimator.from_checkpoint("outputs/.../best.pt")
    # or a published model by name (python -m bottomup.zoo), downloaded into the cache once:
    # estimator = PoseEstimator.from_pretrained("higherhrnet_w32_coco_512")
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
from omegaconf import DictConfig, OmegaConf

from bottomup import build
from bottomup.codec import GROUPING_KEYS
from bottomup.core.keypoints import KeypointLayout
from bottomup.deploy.runtime import SUFFIX_BACKEND, ExportedBackend
from bottomup.engine import estimator as _estimator
from bottomup.engine.checkpoint import CheckpointError
from bottomup.engine.distributed import evaluation_shard, process_group
from bottomup.engine.estimator import FrameResult
from bottomup.engine.evaluator import evaluate_into
from bottomup.engine.people import Prediction
from bottomup.engine.settings import TestSettings
from bottomup.engine.training import run_training
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
    checkpoint, or an exported model), :meth:`from_pretrained` (a published model by name) and
    :meth:`from_exported` all return this class. Calling it on an image
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
        * Official checkpoint (raw state_dict, e.g. ``pose_higher_hrnet_w32_512.pth``) or MMPose 0.x one (mmcv
          ``{"meta", "state_dict"}``, names converted): needs ``experiment`` (e.g. ``"higherhrnet_w32"``,
          ``"hrnet_w48_ae"``) to build the matching model and settings.

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
    def from_pretrained(
        cls,
        name: str,
        *,
        device: str | torch.device | None = None,
        mirror: str | None = None,
        offline: bool | None = None,
        progress: bool = True,
        **overrides: Any,
    ) -> PoseEstimator:
        """A published model by name (``python -m bottomup.zoo`` lists them; ``bottomup.models.zoo.ZOO``), e.g.
        ``PoseEstimator.from_pretrained("higherhrnet_w32_coco_512")``: its file from the cache
        (``$BOTTOMUP_CACHE/weights``, default ``~/.cache/bottomup/weights``), downloaded and verified first when it
        is not there, built by the entry's experiment with its published test settings; then as
        :meth:`from_checkpoint`.

        Args:
            name: a name in the zoo (a whole network, not an ImageNet backbone).
            device: where to run.
            mirror: base URL (or folder) replacing https://download.openmmlab.com/mmpose/; default
                ``$BOTTOMUP_WEIGHTS_MIRROR``.
            offline: never download (a cached file is still used); default ``$BOTTOMUP_OFFLINE``.
            progress: a progress bar while downloading.
            **overrides: test / grouping keys and ``color``, as :meth:`from_checkpoint`.

        Raises:
            bottomup.models.zoo.UnknownWeightsError: (a ``ValueError``) no such name (the closest are named).
            ValueError: a backbone's name; an override out of range.
            bottomup.core.download.DownloadError: not in the cache and not downloadable now: offline, no direct
                download (the official HigherHRNet / SWAHR files), network failure or checksum mismatch; the
                message names the URL, the expected checksum and the path to put the file in by hand.
            RuntimeError / CheckpointError: as :meth:`from_checkpoint`.
        """
        path, entry = build.pretrained_weights(name, mirror=mirror, offline=offline, progress=progress)
        settings = {**build.zoo_test_overrides(entry), **overrides}
        estimator = cls.from_checkpoint(path, experiment=entry.experiment, device=device, **settings)
        estimator.summary = f"{entry.summary()}; {estimator.summary}"
        return estimator

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


# ------------------------------------------------------------------------------------------- train, evaluate
def train(cfg: DictConfig) -> dict[str, Any]:
    """Train as ``cfg`` (``conf/train.yaml`` composed) says: the body of ``python -m bottomup.train``.

    ``bottomup.build.training_job`` builds the data set, model, loss, optimiser and schedule from ``cfg``
    (resuming from ``cfg.resume``: weights, optimiser, schedule, counters, random states, written into the
    checkpoint's folder); ``bottomup.engine.training.run_training`` starts the processes, wraps the model for DDP /
    ``torch.compile`` and runs ``bottomup.engine.trainer.fit`` with evaluation every ``trainer.eval_every``
    epochs and TensorBoard in ``<run dir>/tb``.

    Returns:
        ``{"run_dir", "start_step", "step", "best_ap", "last", "ap"?, <last epoch's mean losses>}``.

    Raises:
        ValueError / FileNotFoundError: bad data root, batch size, precision or device, or a ``data.*`` /
            ``test.*`` / ``trainer.*`` key that is no setting (the message names the key).
        bottomup.engine.trainer.NonFiniteLossError: the loss became NaN / inf (the last good checkpoint is kept).
    """
    settings = build.trainer_settings(cfg)
    build.check_run_config(cfg)
    build.prepare_data_root(cfg.data)
    probe = lambda: build.build_model(cfg.model, int(cfg.data.num_keypoints), pretrained=False)  # noqa: E731
    return run_training(settings, int(cfg.seed), lambda context: build.training_job(cfg, context), probe)


def evaluate(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Evaluate ``cfg.checkpoint`` on ``cfg.data``'s validation set (``conf/eval.yaml`` composed): the body of
    ``python -m bottomup.evaluate``.

    The network and the completed config come from ``bottomup.build.evaluation_config`` (a project checkpoint's
    own network, test-time input size and generated set unless ``overrides`` sets them);
    ``bottomup.engine.evaluator.evaluate_into`` writes into ``cfg.output_dir``: ``results_val.json`` (COCO
    results), ``metrics.json`` (the AP table, checkpoint, model, input size) and ``config.yaml`` (the config that
    ran, network included; ``.hydra/config.yaml`` is replaced by it too).

    Args:
        cfg: the composed ``eval`` config.
        overrides: the command line's ``key=value`` overrides (Hydra's task overrides), to tell settings given
            there from the data config's defaults.

    Raises:
        ValueError: ``checkpoint`` or ``data.root`` not set, or a model whose K differs from the data's.
        FileNotFoundError / bottomup.engine.checkpoint.CheckpointError: the checkpoint cannot be read.
    """
    with process_group(str(cfg.get("device", "auto")), key="device") as (dist_info, device):
        model, info = build.evaluation_config(cfg, overrides)
        model.to(device)
        record = {
            "checkpoint": str(cfg.checkpoint),
            "weights": cfg.get("weights"),
            "model": info["summary"],
            "data": str(cfg.data.get("name")),
            "val_ann": str(cfg.data.val_ann),
            "max_images": cfg.get("max_images"),
            "test": OmegaConf.to_container(cfg.test, resolve=True),
        }
        return evaluate_into(
            build.estimator_from_config(cfg, model, cls=PoseEstimator, device=device),
            build.val_set(cfg),
            Path(str(cfg.output_dir)),
            record=record,
            config_text=OmegaConf.to_yaml(cfg),
            max_images=cfg.get("max_images"),
            progress=bool(cfg.get("progress", True)),
            shard=evaluation_shard(dist_info),
        )

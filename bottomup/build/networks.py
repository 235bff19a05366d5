"""Networks and what runs them from a config: the model, loss, optimiser and schedule, the codec, the estimator and
the evaluation of a network."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from bottomup.build.config import _map_legacy_targets, settings_from_config, test_settings
from bottomup.build.datasets import val_set
from bottomup.build.pretrained import resolve_weights
from bottomup.codec import AssociativeEmbeddingCodec
from bottomup.core.keypoints import KeypointLayout
from bottomup.data.settings import TargetSettings
from bottomup.engine.estimator import PoseEstimator
from bottomup.engine.evaluator import evaluate_model as _evaluate_estimator
from bottomup.engine.optim import apply_lr_scale

log = logging.getLogger("bottomup.build")


def build_model(model_cfg: DictConfig, num_keypoints: int | None = None, *, pretrained: bool = True) -> nn.Module:
    """Instantiate ``model_cfg`` (``_target_``, e.g. ``bottomup.models.HigherHRNet``) and check its K.

    Args:
        model_cfg: the ``model`` group.
        num_keypoints: the data's K (``data.num_keypoints``); ``None`` skips the check.
        pretrained: load ``model.pretrained`` (an ImageNet backbone: a local file, or a backbone's name in
            ``bottomup.models.zoo`` such as ``hrnet_w32_imagenet``, downloaded into the cache when needed) when set;
            ``False`` when checkpoint weights replace everything anyway.

    Raises:
        ValueError: ``model.num_keypoints`` differs from ``num_keypoints``, or the model refused its arguments
            (e.g. an unreadable ``model.pretrained``).
        FileNotFoundError: ``model.pretrained`` does not exist.
        bottomup.core.download.DownloadError: a backbone name whose file is not in the cache and cannot be
            downloaded now (the message names the URL, checksum and the path to put the file in).
    """
    model_cfg = _map_legacy_targets(model_cfg)
    try:
        if not pretrained and "pretrained" in model_cfg:
            model = hydra.utils.instantiate(model_cfg, pretrained=None)
        elif model_cfg.get("pretrained"):  # a path, or a backbone's name in the zoo (its file in the cache)
            path = resolve_weights(str(model_cfg.pretrained), key="model.pretrained", kind="backbone")
            model = hydra.utils.instantiate(model_cfg, pretrained=path)
        else:
            model = hydra.utils.instantiate(model_cfg)
    except hydra.errors.InstantiationException as e:
        if isinstance(e.__cause__, (ValueError, FileNotFoundError)):
            raise e.__cause__ from None  # the model's own message (it names the model.* key), not Hydra's wrapper
        raise
    model_k = getattr(model, "num_keypoints", num_keypoints)
    if num_keypoints is not None and model_k != num_keypoints:
        raise ValueError(
            f"model.num_keypoints={model_k} but data.num_keypoints={num_keypoints}: the model must predict the "
            f"data set's keypoints (leave model.num_keypoints as ${{data.num_keypoints}})"
        )
    return model


def build_loss(loss_cfg: DictConfig) -> nn.Module:
    """The training criterion of the ``loss`` group (``bottomup.models.losses.AssociativeEmbeddingLoss``)."""
    return hydra.utils.instantiate(_map_legacy_targets(loss_cfg))


def build_optimizer(
    optim_cfg: DictConfig, schedule_cfg: DictConfig, model: nn.Module, iters_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimiser (``optim``, ``_partial_``) over ``model``'s parameters and its per-iteration LR schedule
    (``schedule``).

    ``optim.param_groups`` (optional, a ``_partial_`` ``_target_`` taking the model, e.g.
    ``bottomup.engine.optim.layer_decay_groups``) makes the parameter groups; their ``lr_scale`` multiplies their rate
    (:func:`bottomup.engine.optim.apply_lr_scale`) before the schedule takes it as its base.

    Raises:
        ValueError: ``iters_per_epoch`` < 1 (from the schedule); ``optim.param_groups`` that do not fit the model (the
            message names the key).
    """
    groups_cfg = optim_cfg.get("param_groups")
    params = hydra.utils.instantiate(groups_cfg)(model) if groups_cfg is not None else model.parameters()
    optimizer_cfg = OmegaConf.masked_copy(optim_cfg, [k for k in optim_cfg if k != "param_groups"])
    optimizer = hydra.utils.instantiate(optimizer_cfg)(params=params)
    apply_lr_scale(optimizer)
    schedule = hydra.utils.instantiate(_map_legacy_targets(schedule_cfg))
    return optimizer, schedule(optimizer=optimizer, iters_per_epoch=iters_per_epoch)


def estimator_from_config(cfg: Any, model: nn.Module, *, cls: type = PoseEstimator, **overrides: Any) -> Any:
    """``cls`` (a ``PoseEstimator``) on ``model`` with the layout of ``cfg.data`` and :func:`test_settings`;
    ``overrides``: constructor arguments (``device``, ``color``) or test / grouping keys.

    Logs a warning when the network was trained with UDP targets (``data.udp``) and is tested without (``test.udp``),
    or the other way round: its keypoints then sit off by up to a heatmap pixel (README, "UDP").

    Raises:
        ValueError: as the estimator (unknown keys, values out of range, an inconsistent layout).
    """
    settings = test_settings(cfg)
    trained_udp = settings_from_config(TargetSettings, cfg.data).udp if cfg.get("data") is not None else False
    tested_udp = bool(overrides.get("udp", settings.udp))
    if trained_udp != tested_udp:
        log.warning(
            "data.udp=%s but test.udp=%s: a network trained %s UDP targets is decoded %s UDP; pass test.udp=%s "
            "unless this mismatch is what you want",
            str(trained_udp).lower(), str(tested_udp).lower(), "with" if trained_udp else "without",
            "with" if tested_udp else "without", str(trained_udp).lower(),
        )  # fmt: skip
    return cls(model, layout=KeypointLayout.from_config(cfg.data), settings=settings, **overrides)


def _default_output_json(cfg: DictConfig) -> Path:
    try:
        out = cfg.get("output_dir")
    except Exception:  # noqa: BLE001 - ${hydra:...} outside a Hydra app cannot resolve
        out = None
    if not out:
        out = Path("outputs") / "eval"
        log.warning("cfg.output_dir is not available outside a Hydra run: writing the results into %s", out)
    return Path(str(out)) / "results_val.json"


def evaluate_model(
    model: nn.Module | None,
    cfg: DictConfig,
    *,
    device: torch.device | str,
    max_images: int | None = None,
    output_json: str | os.PathLike | None = None,
    progress: bool = True,
    estimator: Any = None,
) -> dict[str, float]:
    """``bottomup.engine.evaluator.evaluate_model`` from a composed config: the estimator of ``model`` with the
    layout of ``cfg.data`` and the ``cfg.test`` settings (:func:`estimator_from_config`), or ``estimator`` (e.g. an
    exported model's), on :func:`val_set`; results into ``output_json`` (default
    ``<cfg.output_dir>/results_val.json``).

    Raises:
        FileNotFoundError / ValueError: as the engine's ``evaluate_model``.
    """
    was_training = model is not None and model.training
    try:
        if estimator is None:
            estimator = estimator_from_config(cfg, model, device=device)  # puts the network in eval mode
        out = Path(output_json) if output_json is not None else _default_output_json(cfg)
        return _evaluate_estimator(estimator, val_set(cfg), output_json=out, max_images=max_images, progress=progress)
    finally:
        if model is not None:
            model.train(was_training)


def build_codec(cfg: DictConfig) -> AssociativeEmbeddingCodec:
    """The codec of a composed config: layout of ``data``, ``data.sigma``, ``model.strides``, ``data.max_people``,
    ``data.joint_rounding``, ``data.udp`` (:class:`~bottomup.data.settings.TargetSettings`, its defaults for keys an
    older saved config lacks; the test pipeline decodes with ``test.udp``) and the grouping settings of ``test``.

    Raises:
        ValueError: a layout whose names do not match (``bottomup.core.keypoints.KeypointLayout``), or a target
            setting out of range (the message names the ``data.*`` key).
    """
    targets = settings_from_config(TargetSettings, cfg.data)
    return AssociativeEmbeddingCodec.from_layout(
        KeypointLayout.from_config(cfg.data),
        sigma=targets.sigma,
        strides=list(cfg.model.strides),
        joint_rounding=targets.joint_rounding,
        grouping=test_settings(cfg).grouping,
        udp=targets.udp,
    )

"""Runs from a composed config: the :class:`~bottomup.engine.training.TrainingJob` of ``python -m bottomup.train``
and the completed config of ``python -m bottomup.evaluate``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from bottomup.build.checkpoints import load_initial_weights, load_model, load_resume_checkpoint
from bottomup.build.config import config_differences, config_test_group, test_settings
from bottomup.build.datasets import (
    build_train_dataset,
    build_train_loader,
    check_run_config,
    prepare_data_root,
    val_set,
)
from bottomup.build.networks import build_loss, build_model, build_optimizer
from bottomup.build.pretrained import pretrained_weights, zoo_test_overrides
from bottomup.core.keypoints import KeypointLayout
from bottomup.engine.trainer import TrainState
from bottomup.engine.training import RunContext, TrainingJob

log = logging.getLogger("bottomup.build")


def build_train_state(cfg: DictConfig, model: nn.Module, iters_per_epoch: int, device: torch.device) -> TrainState:
    """A fresh :class:`~bottomup.engine.trainer.TrainState`: ``optim`` + ``schedule`` over ``model``'s parameters,
    a ``GradScaler`` enabled for ``trainer.precision=fp16``, and ``cfg`` (resolved YAML) to save in checkpoints."""
    optimizer, scheduler = build_optimizer(cfg.optim, cfg.schedule, model, iters_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.trainer.precision == "fp16")
    return TrainState(model, optimizer, scheduler, scaler, config=OmegaConf.to_yaml(cfg, resolve=True))


def training_job(cfg: DictConfig, context: RunContext) -> TrainingJob:
    """The :class:`~bottomup.engine.training.TrainingJob` of a composed ``train`` config, once the run's processes,
    device and precision are known (``bottomup.engine.training.run_training`` calls it after seeding): the data set
    of ``data``, the model of ``model`` (``checkpoint=``: fine-tuning weights loaded; ``resume=``: its checkpoint
    loaded, written into its folder), the loss, optimiser and schedule, the validation set and test settings.
    ``trainer.precision`` is set to the precision that runs (the saved config says what ran).

    Raises:
        ValueError / FileNotFoundError: a bad data set, model or batch setting (the message names the key), or a
            model whose K differs from the annotation file's.
        bottomup.engine.checkpoint.CheckpointError: ``checkpoint=`` / ``resume=`` cannot be loaded.
    """
    with open_dict(cfg):
        cfg.trainer.precision = context.precision
    seed = int(cfg.seed)
    dataset = build_train_dataset(cfg.data, cfg.model.strides, train=True, seed=seed)
    finetune = cfg.get("checkpoint") if not cfg.resume else None
    model = build_model(cfg.model, int(cfg.data.num_keypoints), pretrained=not finetune)
    if finetune:
        load_initial_weights(model, str(finetune))
    elif cfg.get("checkpoint") and context.dist_info.is_main:
        log.info("resume= given: checkpoint=%s is not loaded (the run continues from its last.pt)", cfg.checkpoint)
    if getattr(model, "num_keypoints", None) not in (None, dataset.num_keypoints):
        raise ValueError(
            f"model predicts {model.num_keypoints} keypoints but {cfg.data.train_ann} has {dataset.num_keypoints}"
        )

    def sample() -> dict[str, Any]:
        return dict(build_train_dataset(cfg.data, cfg.model.strides, train=False, split="val").sample(0))

    resume = load_resume_checkpoint(str(cfg.resume)) if cfg.resume else None
    return TrainingJob(
        run_dir=Path(str(cfg.resume)).resolve().parent if cfg.resume else Path(str(cfg.output_dir)),
        dataset=dataset,
        model=model,
        loss=build_loss(cfg.loss),
        make_loader=lambda data, dist_info, device: build_train_loader(data, cfg.data, dist_info, seed, device),
        make_state=lambda net, iters_per_epoch, device: build_train_state(cfg, net, iters_per_epoch, device),
        layout=KeypointLayout.from_config(cfg.data),
        test=test_settings(cfg, strict=True),
        val=val_set(cfg),
        snapshot_sample=sample,
        resume=resume,
        resume_path=str(cfg.resume or ""),
        resume_changes=lambda checkpoint: config_differences(checkpoint.get("config", ""), cfg),
    )


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


def _use_pretrained(cfg: DictConfig, given: set[str]) -> None:
    """``weights=NAME``: ``cfg.checkpoint`` set to the pretrained model's verified file in the cache (downloaded
    first when needed) and its published test settings (``test.udp``) set unless ``given`` sets them.

    Raises:
        ValueError: an unknown name, or a config whose ``model.width`` is not the weights' (names the experiment).
        bottomup.core.download.DownloadError: not in the cache and not downloadable now.
    """
    path, entry = pretrained_weights(str(cfg.weights))
    with open_dict(cfg):
        cfg.checkpoint = str(path)
        for key, value in zoo_test_overrides(entry).items():
            if f"test.{key}" not in given:
                cfg.test[key] = value
    width = OmegaConf.select(cfg, "model.width", default=None)
    if width is not None and int(width) != entry.width:
        raise ValueError(
            f"weights={entry.name} is a W{entry.width} network (experiment={entry.experiment}) but the config builds "
            f"model.width={width}: pass experiment={entry.experiment}"
        )


def _udp_of_checkpoint(cfg: DictConfig, ran: DictConfig, given: set[str]) -> None:
    """A project checkpoint's UDP (``data.udp``: how its network was trained, ``test.udp``: how it was tested)
    replaces the composed config's, unless the command line sets ``data.udp`` or ``test.udp``: a UDP-trained
    network is evaluated with the UDP test time without a flag (README, "UDP")."""
    if given & {"data.udp", "test.udp"}:
        return
    trained = OmegaConf.select(ran, "data.udp", default=None)
    tested = config_test_group(ran).get("udp")
    if trained is not None:
        cfg.data.udp = bool(trained)
    udp = tested if tested is not None else trained
    if udp is not None and bool(udp) != bool(cfg.test.udp):
        log.info("test.udp=%s, the checkpoint's (set test.udp=... to change it)", str(bool(udp)).lower())
    if udp is not None:
        cfg.test.udp = bool(udp)


def evaluation_config(cfg: DictConfig, overrides: Sequence[str] = ()) -> tuple[nn.Module, dict[str, Any]]:
    """The network of ``cfg.checkpoint`` and ``cfg`` completed for its evaluation (a composed ``eval`` config,
    changed in place; the data root prepared).

    The network comes from :func:`load_model` (the config saved in a project checkpoint, else ``cfg.model`` for an
    official ``.pth``); a project checkpoint's network config replaces ``cfg.model``, its test-time input size (its
    training scale) replaces ``test.input_size`` unless ``overrides`` sets ``test.input_size`` or
    ``data.input_size``, its ``data.udp`` / ``test.udp`` replace the composed ones unless ``overrides`` sets either,
    and with ``data=synthetic`` the generated set it was trained on is used unless
    ``overrides`` sets ``data.root`` or ``data.synthetic.*``.

    Args:
        cfg: the composed ``eval`` config.
        overrides: the command line's ``key=value`` overrides (Hydra's task overrides).

    Returns:
        ``(model, info)``: the network on the CPU; ``info["summary"]``, a line describing it.

    ``weights=NAME`` (a pretrained model, ``bottomup.models.zoo``) stands for ``checkpoint=<its file in the
    cache>`` (downloaded first when needed) with its published test settings.

    Raises:
        bottomup.core.download.DownloadError: ``weights=NAME`` not in the cache and not downloadable now.
        ValueError: ``checkpoint`` (or ``weights``) or ``data.root`` not set, both given, an unknown name, an
            unknown ``data.*`` / ``test.*`` key
            (:func:`~bottomup.build.datasets.check_run_config`), or a model whose K differs from the data's.
        FileNotFoundError / bottomup.engine.checkpoint.CheckpointError: the checkpoint cannot be read.
    """
    check_run_config(cfg)
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    has_checkpoint = not OmegaConf.is_missing(cfg, "checkpoint") and bool(cfg.get("checkpoint"))
    if cfg.get("weights"):
        if has_checkpoint:
            raise ValueError(
                f"checkpoint={cfg.checkpoint} and weights={cfg.weights}: give one (a file, or a pretrained name)"
            )
    elif not has_checkpoint:
        raise ValueError(
            "checkpoint is not set: pass checkpoint=PATH (a last.pt / best.pt of this project, or an official "
            "HigherHRNet .pth with the matching experiment=...) or weights=NAME (a pretrained model: python -m "
            "bottomup.zoo lists them)"
        )
    generated = cfg.data.get("root") is None and cfg.data.get("synthetic") is not None
    if not generated:  # a generated set is made once the checkpoint has said which one
        prepare_data_root(cfg.data)
    if cfg.get("weights"):  # after the data root's check: a wrong root fails before a download
        _use_pretrained(cfg, given)
    path = str(cfg.checkpoint)
    info: dict[str, Any] = {}
    model, ran, kind = load_model(path, cfg=cfg, info=info)
    log.info("loaded %s checkpoint %s: %s", kind, path, info["summary"])
    if kind == "project":
        with open_dict(cfg):
            cfg.model = ran.model  # the saved config records the network that ran
            if generated:
                _synthetic_set_of_checkpoint(cfg, ran, given)
            trained = config_test_group(ran).get("input_size") or OmegaConf.select(ran, "data.input_size")
            if trained is not None and not given & {"test.input_size", "data.input_size"}:
                if int(trained) != int(cfg.test.input_size):
                    log.info(
                        "test.input_size=%d, the checkpoint's (the data config says %d; set test.input_size=N to "
                        "change it)", int(trained), int(cfg.test.input_size),
                    )  # fmt: skip
                cfg.test.input_size = int(trained)
            _udp_of_checkpoint(cfg, ran, given)
    if generated:
        prepare_data_root(cfg.data)
    return model, info

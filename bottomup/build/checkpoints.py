"""Checkpoint files -> models: the one path from a file (project ``last.pt`` / ``best.pt`` or official ``.pth``) to
a network, fine-tuning weights, resume checkpoints."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from bottomup.build.config import compose, experiments, saved_config
from bottomup.build.networks import build_model
from bottomup.build.pretrained import pretrained_weights, resolve_weights
from bottomup.engine.checkpoint import CheckpointError, load_checkpoint
from bottomup.models.weights import (
    HEAD_PREFIXES,
    OFFICIAL_LAYOUT,
    VIT_LAYOUT,
    Architecture,
    describe_weights,
    holds_weights,
    is_project_checkpoint,
    load_official_checkpoint,
    match_for_finetuning,
    mismatch_summary,
    read_architecture,
    unwrap_state_dict,
    weights_layout,
)
from bottomup.models.zoo import is_zoo_name

log = logging.getLogger("bottomup.build")


class ExperimentRequiredError(ValueError):
    """A weights file that does not say which network it is (an official or MMPose 0.x ``.pth``, or a project
    checkpoint with no config): :func:`load_model` needs ``experiment`` (a name in ``conf/experiment``) or a
    config."""


#: Experiments that are not a published network (never suggested for a weights file).
_NOT_SUGGESTED = ("quickstart", "smoke")


def experiments_for(arch: Architecture | None) -> list[str]:
    """The experiments in ``conf/experiment`` whose network is ``arch`` (the architecture a weights file's tensors
    describe, :func:`bottomup.models.weights.read_architecture`): every field the tensors tell but the number of
    keypoints (the data set's: ``data=...`` sets it) equals the experiment's ``model``; ``quickstart`` / ``smoke``
    are left out. Composes each experiment: for messages, not for a loop.

    Returns:
        the names, sorted; empty for ``None`` or when none fits.
    """
    if arch is None:
        return []
    wanted = {k: v for k, v in arch.model_kwargs().items() if k != "num_keypoints"}
    found = []
    for name in experiments():
        if name in _NOT_SUGGESTED:
            continue
        try:
            model = compose("train", experiment=name).model
        except Exception:  # noqa: BLE001 - a broken experiment is not suggested; the caller's error stays the news
            continue
        if all(_same(model.get(k), v) for k, v in wanted.items()):
            found.append(name)
    return found


def _same(configured: Any, wanted: Any) -> bool:
    if isinstance(wanted, list):
        return configured is not None and list(configured) == wanted
    return configured == wanted


def _suggestion(names: list[str], arch: Architecture | None) -> str:
    """``"the experiments of its network: a, b"`` (+ the data set's keypoints when they are not COCO's 17)."""
    if not names:
        return ""
    text = f"the experiment{'s' if len(names) > 1 else ''} of its network: {', '.join(names)}"
    if arch is not None and arch.num_keypoints not in (None, 17):
        text += f", with a data config of {arch.num_keypoints} keypoints (e.g. data=crowdpose for 14)"
    return text


def load_model(
    path: str | os.PathLike,
    *,
    cfg: DictConfig | None = None,
    experiment: str | None = None,
    info: dict[str, Any] | None = None,
) -> tuple[nn.Module, DictConfig, str]:
    """Turn a checkpoint file into a model: the one path, for inference, evaluation and the API.

    Precedence (one rule): **the config saved in a project checkpoint builds the network** (the weights were
    trained with it); ``cfg`` (e.g. the evaluation's command line), else the experiment ``experiment`` composed
    from ``conf/``, is used only for a file without one -- an official HigherHRNet / SWAHR ``.pth`` (a raw or
    ``{"state_dict": ...}`` state dict), an MMPose 0.x checkpoint (``{"meta", "state_dict"}`` with ``backbone.`` /
    ``keypoint_head.`` names, converted by ``bottomup.models.weights.convert_mmpose_state_dict``), or a project
    checkpoint whose config is missing. ``model.pretrained`` is never loaded (the checkpoint's weights replace it).

    Args:
        path: the file; read with ``torch.load(weights_only=True)``, which never runs code from the file. A
            pretrained model's name (``bottomup.models.zoo``, e.g. ``higherhrnet_w32_coco_512``) stands for its
            verified file in the cache (downloaded first when needed), and its experiment is the fallback when
            neither ``cfg`` nor ``experiment`` is given.
        cfg: a composed config to fall back on.
        experiment: a name in ``conf/experiment`` to fall back on when ``cfg`` is not given.
        info: a dict to receive ``"metrics"`` (a project checkpoint's, e.g. ``best_ap``; else empty) and
            ``"summary"`` (:func:`describe_model`).

    Returns:
        ``(model, config, kind)``: the model on CPU with the weights loaded (train mode as built), the config it was
        built from (the saved one, else ``cfg`` / the composed experiment), and ``"project"`` or ``"official"``
        (any file without a config: official HigherHRNet / SWAHR or MMPose 0.x; ``info["summary"]`` names which).

    Raises:
        FileNotFoundError: no such file.
        bottomup.core.download.DownloadError: a pretrained model's name whose file is not in the cache and cannot
            be downloaded now (the message names the URL, checksum and the path to put the file in).
        bottomup.engine.checkpoint.CheckpointError: the file is not a loadable weights-only checkpoint.
        ExperimentRequiredError: (a ``ValueError``) a file without a config and neither ``cfg`` nor ``experiment``.
        RuntimeError: weights that do not fit the network (the message lists the mismatches and names the
            experiments of the file's network).
    """
    name = os.fspath(path)
    if is_zoo_name(name) and not os.path.exists(name):
        file, entry = pretrained_weights(name)
        name, experiment = str(file), experiment or entry.experiment
    checkpoint = load_checkpoint(name)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"checkpoint {name} holds a {type(checkpoint).__name__}, not a state_dict or a checkpoint of this project"
        )
    config = saved_config(checkpoint, name)
    layout = weights_layout(checkpoint)
    if config is None:
        if cfg is not None:
            config = cfg
        elif experiment is not None:
            config = compose("train", experiment=experiment)
        else:
            state = unwrap_state_dict(checkpoint) if holds_weights(checkpoint) else {}
            if is_project_checkpoint(checkpoint):
                what = "has no 'config'"
            elif layout == VIT_LAYOUT:
                raise ExperimentRequiredError(
                    f"checkpoint {name} is a {layout} top-down release ({describe_weights(state, layout)}), not an "
                    "associative-embedding network: train a ViTPoseAE of that size from its backbone with "
                    f"model.pretrained={name}"
                )
            elif layout != OFFICIAL_LAYOUT:
                what = f"is an {layout} checkpoint ({describe_weights(state, layout)}) without a config of this project"
            else:
                what = "looks like an official HigherHRNet state_dict (no 'model'/'config' keys)"
            arch = read_architecture(state)
            fits = experiments_for(arch)
            example = f"experiment='{fits[0]}' ({_suggestion(fits, arch)})" if fits else "experiment='higherhrnet_w32'"
            raise ExperimentRequiredError(
                f"checkpoint {name} {what}; pass experiment=<name in conf/experiment>, e.g. {example}"
            )
    model = build_model(config.model, pretrained=False)
    if info is not None:
        info["metrics"] = dict(checkpoint.get("metrics") or {}) if is_project_checkpoint(checkpoint) else {}
        info["step"] = checkpoint.get("step") if is_project_checkpoint(checkpoint) else None
        info["summary"] = describe_model(
            config,
            info["metrics"],
            kind="project" if is_project_checkpoint(checkpoint) else "official",
            layout=layout,
        )
    if is_project_checkpoint(checkpoint):
        state = unwrap_state_dict(checkpoint)  # its "model", wrapper prefixes stripped
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise RuntimeError(
                f"checkpoint {name} does not fit the model built from the config: {mismatch_summary(e)}. "
                "Pass the experiment the checkpoint was trained with (experiment=...)."
            ) from e
        return model, config, "project"
    try:
        load_official_checkpoint(model, checkpoint, name=name)  # raises RuntimeError with a diagnosis on mismatch
    except RuntimeError as e:
        arch = read_architecture(unwrap_state_dict(checkpoint))
        suggestion = _suggestion(experiments_for(arch), arch)
        if not suggestion:
            raise
        first, _, rest = str(e).partition("\n")
        raise RuntimeError(f"{first} Pass {suggestion}.\n{rest}".rstrip()) from e
    return model, config, "official"


def describe_model(
    config: DictConfig, metrics: dict[str, Any] | None = None, kind: str = "project", layout: str | None = None
) -> str:
    """One line on what a checkpoint is: its data set, network and best validation AP, e.g.
    ``"synthetic data (17 keypoints), HigherHRNet W16, input 160, best val AP 0.612"``; for ``kind="official"``
    (a file without a config) the weights' ``layout`` (``bottomup.models.weights.weights_layout``) is named,
    e.g. ``"MMPose 0.x weights (no metrics stored)"``."""
    data = config.get("data") or {}
    model = config.get("model") or {}
    target = str(model.get("_target_", "")).rsplit(".", 1)[-1] or "network"
    parts = [f"{data.get('name', '?')} data ({data.get('num_keypoints', '?')} keypoints)"]
    swahr = " + SWAHR" if model.get("swahr") else ""
    size = f"W{model.get('width', '?')}" if "arch" not in model else f"{model.get('arch')}"
    parts.append(f"{target}{swahr} {size}, input {data.get('input_size', '?')}")
    ap = (metrics or {}).get("best_ap")
    if kind == "official":
        source = layout if layout and layout != OFFICIAL_LAYOUT else "official"
        parts.append(f"{source} weights (no metrics stored)")
    elif ap is not None and float(ap) >= 0:
        parts.append(f"best val AP {float(ap):.3f}")
    else:
        parts.append("never evaluated")
    return ", ".join(parts)


def checkpoint_state_dict(checkpoint: Any, name: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The weights of a loaded checkpoint as a plain ``state_dict``: a project checkpoint's ``model``, an official
    HigherHRNet / SWAHR ``.pth`` (raw, ``{"state_dict": ...}``) or an MMPose 0.x checkpoint (names converted),
    ``module.`` (DDP) / ``_orig_mod.`` prefixes stripped (``bottomup.models.weights.holds_weights`` /
    ``unwrap_state_dict``).

    Raises:
        CheckpointError: neither (the message names ``name``).
    """
    if not holds_weights(checkpoint):
        raise CheckpointError(
            f"checkpoint {name} holds no weights (not a last.pt / best.pt of this project, an official "
            "HigherHRNet state_dict nor an MMPose 0.x checkpoint)"
        )
    return unwrap_state_dict(checkpoint)


def load_initial_weights(model: nn.Module, path: str | os.PathLike, key: str = "checkpoint") -> dict[str, list[str]]:
    """Start training from the weights in ``path`` (fine-tuning): every tensor whose name and shape fit ``model``.

    The prediction head (:data:`HEAD_PREFIXES`) may differ in shape, e.g. a COCO checkpoint (K = 17) fine-tuned on
    a data set with other keypoints: those tensors keep ``model``'s fresh initialisation and a warning names them.
    Anything else that does not fit -- backbone tensors of other shapes (another ``model.width`` /
    ``model.stem_channels``), missing from the file or only in it (another ``model.stage_modules`` /
    ``model.stem_blocks``) -- is an error, since training would silently start from a half-random network.

    Args:
        model: the freshly built network (CPU or device); changed in place.
        path: a ``last.pt`` / ``best.pt`` of this project, an official HigherHRNet / SWAHR ``.pth`` or an MMPose
            0.x checkpoint, read weights-only (no code from the file runs); or a pretrained model's name
            (``bottomup.models.zoo``), its verified file in the cache (downloaded first when needed).
        key: the config key ``path`` came from, for the messages.

    Returns:
        ``{"loaded": [...], "reinitialised": [...], "ignored": [...]}``: tensor names loaded from the file, kept
        fresh (head tensors of another shape or missing), and head tensors in the file but not in ``model``.

    Raises:
        FileNotFoundError / CheckpointError: unreadable file, or backbone weights that do not fit (the message
            gives the file's width and K against the model's).
        ValueError: a name-like value that is neither a file nor a pretrained model's name.
        bottomup.core.download.DownloadError: a pretrained model that is not in the cache and cannot be
            downloaded now (the message names the URL, checksum and path).
    """
    name = resolve_weights(path, key=key)
    checkpoint = load_checkpoint(name, key=key)
    state = checkpoint_state_dict(checkpoint, name)
    layout = weights_layout(checkpoint)
    own = model.state_dict()
    split = match_for_finetuning(state, own, HEAD_PREFIXES)
    loaded, reinit, ignored, bad = split["loaded"], split["reinitialised"], split["ignored"], split["unfit"]
    if bad or not loaded:
        described = describe_weights(state, layout)
        ours = describe_weights(own)
        raise CheckpointError(
            f"{key}={name} does not fit the model: {len(bad)} backbone tensors missing, extra or of another shape "
            f"(e.g. {bad[0] if bad else 'all'}); the file is {described}, the config builds {ours}. Set model.width "
            "/ model.stage_modules / model.blocks_per_branch / model.stem_blocks / model.stem_channels (a ViT: "
            "model.arch) to the checkpoint's"
        )
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    log.info("%s=%s: loaded %d of %d tensors", key, name, len(loaded), len(own))
    if reinit:
        log.warning(
            "%s=%s: %d head tensors re-initialised because the file's head predicts other outputs (%s; the "
            "config: %s), e.g. %s",
            key, name, len(reinit), describe_weights(state, layout), describe_weights(own), reinit[0],
        )  # fmt: skip
    if ignored:
        log.info("%s=%s: %d tensors of the file are not in this model (e.g. %s)", key, name, len(ignored), ignored[0])
    return {"loaded": loaded, "reinitialised": reinit, "ignored": ignored}


def load_resume_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint of this project to continue (``resume=``): weights, optimiser, schedule, counters.

    Raises:
        FileNotFoundError / bottomup.engine.checkpoint.CheckpointError: unreadable, a folder (the message names the
            ``last.pt`` / ``best.pt`` in it), or not a ``last.pt`` / ``best.pt`` of this project (e.g. an official
            ``.pth``, which has weights only).
    """
    checkpoint = load_checkpoint(path, key="resume")
    needed = ("model", "optimizer", "scheduler", "epoch", "step", "rng")
    lacking = [k for k in needed if not isinstance(checkpoint, dict) or k not in checkpoint]
    if lacking:
        raise CheckpointError(
            f"resume={path} is not a training checkpoint of this project (no {', '.join(lacking)}): resume= takes "
            "a last.pt / best.pt written by python -m bottomup.train"
        )
    return checkpoint

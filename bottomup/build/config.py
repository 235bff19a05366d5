"""Composing and reading configs: where ``conf/`` is, the structured-config schemas, ``compose``, the settings
objects of a config's groups (``test``, ``trainer``, ``data.*``), and the configs saved in checkpoints."""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from bottomup.codec import GroupingSettings
from bottomup.core.keypoints import KeypointLayout
from bottomup.engine.settings import TEST_KEYS, TestSettings, TrainerSettings
from bottomup.models.weights import (
    is_project_checkpoint,
)

log = logging.getLogger("bottomup.build")


def _find_conf() -> Path:
    packaged = Path(__file__).resolve().parents[1] / "conf"  # a wheel: conf/ is package data (bottomup/conf)
    if (packaged / "train.yaml").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "conf"  # a source checkout / editable install


#: The folder of the Hydra configs (``train.yaml``, ``eval.yaml`` and the groups).
CONF_DIR: Path = _find_conf()

#: ``_target_`` paths of bottomup 0.1 (flat package), as saved in the configs of its checkpoints -> their place now.
LEGACY_TARGETS: dict[str, str] = {
    "bottomup.losses.AssociativeEmbeddingLoss": "bottomup.models.losses.AssociativeEmbeddingLoss",
    "bottomup.schedule.warmup_multistep": "bottomup.engine.schedule.warmup_multistep",
}


def _flat_test_schema() -> type:
    """The ``test`` group's structured config: :class:`TestSettings`' fields with the grouping keys beside them
    (the flat form ``conf/test/default.yaml`` writes), each default taken from the settings classes."""
    own = [f for f in dataclasses.fields(TestSettings) if f.name != "grouping"]
    grouping = list(dataclasses.fields(GroupingSettings))
    defaults = {**{f.name: getattr(TestSettings(), f.name) for f in own}, **GroupingSettings().as_dict()}
    types = {"input_size": int, "scales": list[float], "flip_test": bool, "precision": str, "channels_last": bool,
             "fold_bn": bool, "compile": bool, "udp": bool, "nms_kernel": int, "max_people": int, "detection_threshold": float,
             "tag_threshold": float, "use_detection_val": bool, "ignore_too_much": bool, "adjust": bool,
             "refine": bool, "assignment": str}  # fmt: skip
    names = [f.name for f in own + grouping]
    if set(names) != set(types):  # a field added to a settings class must get its schema type here
        raise RuntimeError(f"test schema types out of date: {sorted(set(names) ^ set(types))}")
    fields = []
    for name in names:
        value = defaults[name]
        default = dataclasses.field(default_factory=lambda v=list(value): list(v)) if name == "scales" else value
        fields.append((name, types[name], default if name == "scales" else dataclasses.field(default=default)))
    return dataclasses.make_dataclass("TestSchema", fields)


def _schema_of(cls: type, name: str) -> type:
    """A settings dataclass as a Hydra structured config: the same fields, types and defaults, not frozen (the
    composed config stays writable), ``X | None`` written as ``Optional[X]`` for OmegaConf."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        args = typing.get_args(kind)
        if type(None) in args and len(args) == 2:
            kind = typing.Optional[next(a for a in args if a is not type(None))]  # noqa: UP045 - OmegaConf's form
        fields.append((f.name, kind, dataclasses.field(default=f.default)))
    return dataclasses.make_dataclass(name, fields)


def register_schemas() -> None:
    """Register the structured configs that validate ``conf/`` at compose time (``conf/test/default.yaml`` lists
    ``/schema/test`` in its defaults, ``conf/trainer/default.yaml`` ``/schema/trainer``): a key the settings do not know, or a value of the wrong type, fails the
    composition with the key's name. Called on import of this module (the entry points import it first)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="schema", name="test", node=_flat_test_schema())
    ConfigStore.instance().store(group="schema", name="trainer", node=_schema_of(TrainerSettings, "TrainerSchema"))


def compose(config_name: str = "train", overrides: Sequence[str] = (), experiment: str | None = None) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with command-line style ``overrides`` (no run folder is made).

    Raises:
        hydra.errors.MissingConfigException: an unknown experiment or group option (the message lists them).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    args = list(overrides) + ([f"experiment={experiment}"] if experiment else [])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=args)


def data_layout(name: str) -> KeypointLayout:
    """The keypoint layout of ``conf/data/<name>.yaml`` (with the files its ``defaults`` name; no data root needed).

    Raises:
        hydra.errors.MissingConfigException: no such data config. ValueError: as ``KeypointLayout``.
    """
    return KeypointLayout.from_config(compose("train", [f"data={name}"]).data)


def experiments() -> list[str]:
    """The experiment names in ``conf/experiment`` (sorted)."""
    return sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def as_config(cfg: Any) -> DictConfig:
    """A DictConfig from a DictConfig, a YAML string (a checkpoint's ``config``) or a mapping."""
    if isinstance(cfg, DictConfig):
        return cfg
    return OmegaConf.create(cfg if isinstance(cfg, str) else dict(cfg))


def config_test_group(cfg: Any) -> Any:
    """A config's test-time group: ``cfg.test``, or ``cfg.grouping`` (its name in bottomup 0.1 configs, which the
    checkpoints of that version hold); empty when neither is there."""
    return cfg.get("test") or cfg.get("grouping") or {}


def test_settings(cfg: Any, *, strict: bool = False) -> TestSettings:
    """The :class:`TestSettings` of a project config's test-time group (:func:`config_test_group`);
    ``input_size`` falls back to ``data.input_size``, ``max_people`` to ``data.max_people``.

    Args:
        cfg: a config: the composed one of a run, or one saved in a checkpoint.
        strict: every key of the group must be a setting. For a config composed for this run (Hydra's
            ``+test.x=1`` adds a key past the schema); not for a saved one, where an older version's extra keys are
            ignored.

    Raises:
        ValueError: a value out of its range, or with ``strict`` a key that is no setting (the message names the
            ``test.*`` key).
    """
    group = config_test_group(cfg)
    values = OmegaConf.to_container(group, resolve=True) if isinstance(group, DictConfig) else dict(group)
    if strict:
        unknown = sorted(str(k) for k in values if k not in TEST_KEYS)
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(f'test.{k}' for k in unknown)}: test holds {', '.join(TEST_KEYS)}"
            )
    data = cfg.get("data") or {}
    if "input_size" not in values and data.get("input_size") is not None:
        values["input_size"] = int(data.input_size)
    if "max_people" not in values and data.get("max_people") is not None:
        values["max_people"] = int(data.max_people)
    return TestSettings.from_flat(values)


_Settings = TypeVar("_Settings")


def settings_from_config(cls: type[_Settings], node: DictConfig, strict: bool = False) -> _Settings:
    """A settings dataclass (``bottomup.data.settings``) filled from the config node that holds its keys: each field
    takes the node's key of the same name, or its default when the node lacks it (e.g. the config saved by an
    older checkpoint).

    Args:
        cls: the dataclass; its ``config_node`` (e.g. ``"data.augmentation"``) names ``node`` in messages.
        node: the config node (interpolations resolved on access).
        strict: every key of ``node`` must be a field (for a node that holds only this dataclass's keys).

    Raises:
        ValueError: with ``strict``, a key that is no field (a misspelt setting); or the dataclass's own check.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    if strict:
        unknown = sorted(str(k) for k in node if k not in names)
        if unknown:
            prefix = getattr(cls, "config_node", "")
            raise ValueError(
                f"unknown key(s) {', '.join(f'{prefix}.{k}' for k in unknown)}: {prefix} holds {', '.join(names)}"
            )
    return cls(**{name: node[name] for name in names if name in node})


def config_differences(
    old: Any, new: DictConfig, groups: Sequence[str] = ("model", "data", "loss", "optim", "schedule", "trainer", "test")
) -> list[str]:
    """``"key: old -> new"`` for every leaf of ``groups`` whose value differs between two configs (e.g. a
    checkpoint's saved config and the command line's on ``resume=``); keys only one side has are listed too.

    Args:
        old: a config, or its YAML text (a checkpoint's ``config``); unparseable text gives no differences.
        new: the current config (resolved here).
    """
    try:
        before = OmegaConf.to_container(as_config(old), resolve=True)
    except Exception:  # noqa: BLE001 - a damaged saved config has nothing to compare
        return []
    after = OmegaConf.to_container(new, resolve=True)

    def leaves(node: Any, prefix: str) -> dict[str, Any]:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for k, v in node.items():
                out.update(leaves(v, f"{prefix}.{k}" if prefix else str(k)))
            return out
        return {prefix: node}

    a = {k: v for g in groups for k, v in leaves(before.get(g), g).items()} if isinstance(before, dict) else {}
    b = {k: v for g in groups for k, v in leaves(after.get(g), g).items()}
    missing = object()
    return [
        f"{k}: {a.get(k, '(none)')} -> {b.get(k, '(none)')}"
        for k in sorted(set(a) | set(b))
        if a.get(k, missing) != b.get(k, missing)
    ]


# --------------------------------------------------------------------------------------- checkpoint -> model
# Here: what needs a config (which one builds the network, the messages naming its keys) and the files (read
# weights-only, CheckpointError). Every tensor-level step -- unwrapping, the official / project layouts, matching
# a state dict against a model, the architecture a state dict describes -- is bottomup.models.weights';
# is_project_checkpoint, HEAD_PREFIXES, mismatch_summary and describe_weights are its names, kept here too.


def _map_legacy_targets(node: Any) -> Any:
    """A copy of a config node with the ``_target_`` paths of :data:`LEGACY_TARGETS` replaced (no-op otherwise)."""
    if not isinstance(node, DictConfig):
        return node
    text = OmegaConf.to_yaml(node)
    if not any(old in text for old in LEGACY_TARGETS):
        return node
    data = OmegaConf.to_container(node, resolve=True)

    def fix(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: (LEGACY_TARGETS.get(v, v) if k == "_target_" else fix(v)) for k, v in x.items()}
        if isinstance(x, list):
            return [fix(v) for v in x]
        return x

    return OmegaConf.create(fix(data))


def saved_config(checkpoint: Any, name: str = "<checkpoint>") -> DictConfig | None:
    """The config saved in a project checkpoint (its ``config``: YAML text or a mapping), with legacy
    ``_target_`` paths mapped; ``None`` for official checkpoints and project ones without a usable config."""
    if not is_project_checkpoint(checkpoint):
        return None
    saved = checkpoint.get("config")
    if saved is None or (isinstance(saved, str) and not saved.strip()):
        return None
    try:
        cfg = as_config(saved)
    except Exception as e:  # noqa: BLE001 - a damaged config falls back to the caller's, with a warning
        log.warning("cannot parse the config stored in %s (%s); using the command line's model", name, e)
        return None
    if not isinstance(cfg, DictConfig) or "model" not in cfg:
        return None
    return _map_legacy_targets(cfg)


def trainer_settings(cfg: DictConfig) -> TrainerSettings:
    """The :class:`~bottomup.engine.settings.TrainerSettings` of ``cfg.trainer``.

    Raises:
        ValueError: a value out of its range, or a key that is no setting (``+trainer.epoch=3``: Hydra's ``+``
            adds keys past the schema), the message naming the ``trainer.*`` key.
    """
    return settings_from_config(TrainerSettings, cfg.trainer, strict=True)

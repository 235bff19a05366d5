"""Configs -> objects: the one place that builds models, data sets, losses, optimisers, codecs and that turns a
checkpoint into a model.

* :data:`CONF_DIR` is where the Hydra configs are: ``bottomup/conf`` inside an installed wheel (package data), the
  repository's top-level ``conf/`` in a source checkout or an editable install. :func:`compose` composes one of
  its root configs (``train`` / ``eval``) without a Hydra run.
* Constructors of the library take plain typed arguments; this module reads the config groups
  (``conf/<group>/*.yaml``) and passes them on, instantiating ``_target_`` nodes with Hydra.
* :func:`load_model` is the one path from a checkpoint file to a model, always through the weights-only loader
  (``bottomup.engine.checkpoint.load_checkpoint``), with one precedence (see there).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import hydra
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.utils.data import DataLoader

from bottomup.codec import AssociativeEmbeddingCodec, GroupingSettings
from bottomup.core.keypoints import KeypointLayout, flip_index_from_pairs
from bottomup.data.annotations import CocoKeypointAnnotations
from bottomup.data.augmentation import Augmentation
from bottomup.data.batch import collate
from bottomup.data.dataset import KeypointDataset
from bottomup.data.encoding import TargetEncoder
from bottomup.data.settings import AnnotationSettings, AugmentationSettings, TargetSettings
from bottomup.engine.checkpoint import CheckpointError, load_checkpoint
from bottomup.engine.distributed import DistInfo
from bottomup.engine.estimator import PoseEstimator
from bottomup.engine.evaluator import ValSet
from bottomup.engine.evaluator import evaluate_model as _evaluate_estimator
from bottomup.engine.settings import TEST_KEYS, TestSettings, TrainerSettings
from bottomup.engine.trainer import EpochSampler, TrainState
from bottomup.engine.training import RunContext, TrainingJob
from bottomup.models.weights import (
    HEAD_PREFIXES,
    describe_weights,
    holds_weights,
    is_project_checkpoint,
    load_official_checkpoint,
    match_for_finetuning,
    mismatch_summary,
    unwrap_state_dict,
)

log = logging.getLogger(__name__)

__all__ = [
    "CONF_DIR",
    "LEGACY_TARGETS",
    "compose",
    "experiments",
    "data_layout",
    "as_config",
    "prepare_data_root",
    "build_model",
    "build_loss",
    "build_optimizer",
    "build_codec",
    "config_test_group",
    "test_settings",
    "check_run_config",
    "data_keys",
    "estimator_from_config",
    "val_set",
    "evaluate_model",
    "register_schemas",
    "settings_from_config",
    "build_train_dataset",
    "build_train_loader",
    "build_train_state",
    "config_differences",
    "trainer_settings",
    "training_job",
    "evaluation_config",
    "is_project_checkpoint",
    "saved_config",
    "load_model",
    "ExperimentRequiredError",
    "mismatch_summary",
    "load_resume_checkpoint",
]


def _find_conf() -> Path:
    packaged = Path(__file__).resolve().parent / "conf"  # a wheel: conf/ is package data
    if (packaged / "train.yaml").is_file():
        return packaged
    return Path(__file__).resolve().parents[1] / "conf"  # a source checkout / editable install


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
             "fold_bn": bool, "compile": bool, "nms_kernel": int, "max_people": int, "detection_threshold": float,
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


def prepare_data_root(data_cfg: DictConfig) -> Path:
    """Check ``data.root``; for the synthetic data set (``data.synthetic``) with no root, generate it once into
    the cache and point ``data.root`` there.

    Raises:
        ValueError: ``data.root`` is not set. FileNotFoundError: it is not a folder.
    """
    root = None if OmegaConf.is_missing(data_cfg, "root") else data_cfg.root
    if root is None and data_cfg.get("synthetic") is not None:
        from bottomup.data.synthetic import ensure_synthetic_coco

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
    complete_data_layout(data_cfg)
    return path


#: ``data.*`` keys of the keypoint layout; ``null`` ones are read from the annotation file (``data=custom``).
LAYOUT_KEYS: tuple[str, ...] = (
    "keypoint_names",
    "num_keypoints",
    "flip_pairs",
    "skeleton",
    "joint_order",
    "oks_sigmas",
    "category_id",
)


def complete_data_layout(data_cfg: DictConfig) -> None:
    """Fill the ``null`` keys of :data:`LAYOUT_KEYS` from the keypoint category of ``data.train_ann`` (else
    ``data.val_ann``), then check the whole layout, before any training step or evaluation.

    What is read (``bottomup.data.keypoints.layout_from_category``): the keypoint names, K, flip pairs from
    ``left_*`` / ``right_*`` names, the skeleton (1-based indices in COCO files), matching in channel order, and
    OKS sigmas (COCO's for COCO names, else ``DEFAULT_OKS_SIGMA`` with a warning). Given keys are kept, so
    ``data.flip_pairs=[...]`` overrides what the names suggest.

    Raises:
        FileNotFoundError: a key is ``null`` and neither annotation file exists.
        ValueError: ``data.num_keypoints`` disagrees with ``data.keypoint_names``, a list names an unknown
            keypoint or has the wrong length, or the annotation files have another K (each message names the key
            or file to change).
    """
    from bottomup.core.keypoints import COCO_OKS_SIGMAS, DEFAULT_OKS_SIGMA, layout_from_category
    from bottomup.data.annotations import keypoint_categories

    unset = [k for k in LAYOUT_KEYS if k in data_cfg and data_cfg[k] is None]
    if unset:
        ann = next((Path(str(data_cfg[k])) for k in ("train_ann", "val_ann") if Path(str(data_cfg[k])).is_file()), None)
        if ann is None:
            raise FileNotFoundError(
                f"data.{unset[0]} is null, to be read from the annotation file, but neither data.train_ann="
                f"{data_cfg.train_ann} nor data.val_ann={data_cfg.val_ann} exists: point them at your COCO-format files"
            )
        category = dict(keypoint_categories(_read_json(ann), ann)[0])
        given = data_cfg.get("keypoint_names")
        if given is not None and list(given) != list(category["keypoints"]):
            category["keypoints"] = list(given)
            category.pop("skeleton", None)  # its indices count the file's keypoints
        derived = layout_from_category(category, str(ann))
        with open_dict(data_cfg):
            for k in unset:
                data_cfg[k] = derived[k]
        names = list(data_cfg.keypoint_names)
        log.info(
            "data layout read from %s (%s): K=%d %s; flip pairs %s",
            ann, ", ".join(f"data.{k}" for k in unset), len(names), names, [tuple(p) for p in data_cfg.flip_pairs],
        )  # fmt: skip
        other = [n for n in names if n not in COCO_OKS_SIGMAS]
        if "oks_sigmas" in unset and other:
            log.warning(
                "data.oks_sigmas not set: COCO's sigmas for COCO's keypoint names, %.3f for %s; set data.oks_sigmas "
                "(K values, the spread of human annotations per keypoint) for a meaningful AP",
                DEFAULT_OKS_SIGMA, other,
            )  # fmt: skip
    check_data_layout(data_cfg)


def check_data_layout(data_cfg: DictConfig) -> KeypointLayout:
    """The layout of ``data_cfg`` checked against ``data.num_keypoints`` and the validation annotation file.

    Raises:
        ValueError: as :func:`complete_data_layout`.

    A keypoint with a side (``left_*`` / ``right_*``) in no flip pair gets one warning naming it
    (``bottomup.core.keypoints.unpaired_sided_names``): a flip would keep its label on the mirrored side.
    """
    names = list(data_cfg.keypoint_names)
    k = int(data_cfg.num_keypoints)
    if len(names) != k:
        raise ValueError(
            f"data.num_keypoints={k} but data.keypoint_names lists {len(names)} names: give data.keypoint_names "
            "(and flip_pairs, skeleton, joint_order, oks_sigmas) for your keypoints, or use data=custom to read "
            "them from the annotation file"
        )
    try:
        layout = KeypointLayout.from_config(data_cfg)
    except ValueError as e:
        raise ValueError(f"data config {data_cfg.get('name')!r}: {e} (fix the data.* list it names)") from e
    _warn_unpaired(layout)
    val_ann = Path(str(data_cfg.val_ann))
    if val_ann.is_file():
        from bottomup.data.annotations import keypoint_categories

        file_names = list(keypoint_categories(_read_json(val_ann), val_ann)[0]["keypoints"])
        if len(file_names) != k:
            raise ValueError(
                f"data.val_ann={val_ann} has {len(file_names)} keypoints but the data config has {k}: use the data "
                "config of this data set (data=custom reads it from the file)"
            )
    return layout


def _warn_unpaired(layout: KeypointLayout) -> None:
    """One warning naming the keypoints with a side in no flip pair (``unpaired_sided_names``)."""
    from bottomup.core.keypoints import unpaired_sided_names

    unpaired = unpaired_sided_names(layout.keypoint_names, layout.flip_pairs)
    if not unpaired:
        return
    names = set(layout.keypoint_names)
    absent = [f"{n} (no {m})" for n, m in unpaired.items() if m not in names]
    unlisted = [f"{n} ({m} is a keypoint, not paired with it)" for n, m in unpaired.items() if m in names]
    log.warning(
        "data.keypoint_names: %s %s a side but no flip partner in data.flip_pairs: %s. A horizontal flip "
        "(data.augmentation.flip_prob, test.flip_test) mirrors the image but keeps these labels, which then mark the "
        "other side; add the partner keypoints, pair them in data.flip_pairs, or set data.augmentation.flip_prob=0 "
        "and test.flip_test=false",
        ", ".join(unpaired), "has" if len(unpaired) == 1 else "have", "; ".join(absent + unlisted),
    )  # fmt: skip


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"annotation file {path} cannot be read as JSON ({e})") from e


def build_model(model_cfg: DictConfig, num_keypoints: int | None = None, *, pretrained: bool = True) -> nn.Module:
    """Instantiate ``model_cfg`` (``_target_``, e.g. ``bottomup.models.HigherHRNet``) and check its K.

    Args:
        model_cfg: the ``model`` group.
        num_keypoints: the data's K (``data.num_keypoints``); ``None`` skips the check.
        pretrained: load ``model.pretrained`` (an ImageNet backbone) when set; ``False`` when checkpoint weights
            replace everything anyway.

    Raises:
        ValueError: ``model.num_keypoints`` differs from ``num_keypoints``, or the model refused its arguments
            (e.g. an unreadable ``model.pretrained``).
        FileNotFoundError: ``model.pretrained`` does not exist.
    """
    model_cfg = _map_legacy_targets(model_cfg)
    try:
        if not pretrained and "pretrained" in model_cfg:
            model = hydra.utils.instantiate(model_cfg, pretrained=None)
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
    optim_cfg: DictConfig, schedule_cfg: DictConfig, params: Any, iters_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimiser (``optim``, ``_partial_``) over ``params`` and its per-iteration LR schedule (``schedule``).

    Raises:
        ValueError: ``iters_per_epoch`` < 1 (from the schedule).
    """
    optimizer = hydra.utils.instantiate(optim_cfg)(params=params)
    schedule = hydra.utils.instantiate(_map_legacy_targets(schedule_cfg))
    return optimizer, schedule(optimizer=optimizer, iters_per_epoch=iters_per_epoch)


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


#: ``data.*`` keys besides the settings classes' fields and :data:`LAYOUT_KEYS`: files, loader and groups.
DATA_OTHER_KEYS: tuple[str, ...] = (
    "name", "root", "train_ann", "train_images", "val_ann", "val_images", "eval_type", "batch_size", "num_workers",
    "augmentation", "synthetic",
)  # fmt: skip


def data_keys() -> tuple[str, ...]:
    """Every key the ``data`` group may hold: :class:`~bottomup.data.settings.AnnotationSettings` and
    :class:`~bottomup.data.settings.TargetSettings` fields, :data:`LAYOUT_KEYS` and :data:`DATA_OTHER_KEYS`."""
    fields = [f.name for cls in (AnnotationSettings, TargetSettings) for f in dataclasses.fields(cls)]
    return tuple(dict.fromkeys([*fields, *LAYOUT_KEYS, *DATA_OTHER_KEYS]))


def check_run_config(cfg: DictConfig) -> None:
    """Refuse keys that no setting reads in a config composed for this run (``train`` / ``eval``): Hydra's ``+``
    (``+data.foo=1``, ``+test.foo=1``) adds keys past the config files and the structured schemas, which would
    otherwise be ignored without a word. Checked: ``data`` (:func:`data_keys`), ``data.augmentation``
    (:class:`~bottomup.data.settings.AugmentationSettings`) and ``test`` (:func:`test_settings` with ``strict``);
    ``trainer`` is checked by :func:`trainer_settings`. Configs saved in checkpoints are not checked (an older
    version's keys are ignored there).

    Raises:
        ValueError: the unknown keys, named ``group.key``, and the keys the group holds.
    """
    data = cfg.get("data")
    if data is not None:
        known = data_keys()
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(f'data.{k}' for k in unknown)}: data holds {', '.join(sorted(known))}"
            )
        if data.get("augmentation") is not None:
            settings_from_config(AugmentationSettings, data.augmentation, strict=True)
    if "test" in cfg:
        test_settings(cfg, strict=True)


def estimator_from_config(cfg: Any, model: nn.Module, *, cls: type = PoseEstimator, **overrides: Any) -> Any:
    """``cls`` (a ``PoseEstimator``) on ``model`` with the layout of ``cfg.data`` and :func:`test_settings`;
    ``overrides``: constructor arguments (``device``, ``color``) or test / grouping keys.

    Raises:
        ValueError: as the estimator (unknown keys, values out of range, an inconsistent layout).
    """
    return cls(model, layout=KeypointLayout.from_config(cfg.data), settings=test_settings(cfg), **overrides)


def val_set(cfg: Any) -> ValSet:
    """The validation set of ``cfg.data`` (``val_ann``, ``val_images``, layout, ``eval_type``, ``name``)."""
    data = cfg.data
    return ValSet(
        ann_file=Path(str(data.val_ann)),
        image_dir=Path(str(data.val_images)),
        layout=KeypointLayout.from_config(data),
        eval_type=str(data.get("eval_type", "coco")),
        name=str(data.get("name", "")),
    )


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
    ``data.joint_rounding`` (:class:`~bottomup.data.settings.TargetSettings`, its defaults for keys an older saved
    config lacks) and the grouping settings of ``test``.

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
    )


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


def build_train_dataset(
    data_cfg: DictConfig, strides: Sequence[int], train: bool = True, seed: int = 0, split: str = "train"
) -> KeypointDataset:
    """The training ``KeypointDataset`` of ``conf/data/*.yaml``: the annotations of ``data.train_ann`` /
    ``data.train_images`` (``split="val"``: ``data.val_ann`` / ``data.val_images``; images missing on disk left
    out with a warning, :class:`~bottomup.data.settings.AnnotationSettings`), the augmentation of
    ``data.augmentation`` (:class:`~bottomup.data.settings.AugmentationSettings`; random when ``train``, drawn from
    ``seed``) and the targets at ``strides`` (``model.strides``) of the ``data.*`` target keys
    (:class:`~bottomup.data.settings.TargetSettings`).

    Raises:
        FileNotFoundError: the annotation file or image folder does not exist, or none of its images is in the
            folder (the message names ``data.<split>_images`` and the count).
        ValueError: a setting out of range or an unknown ``data.augmentation`` key (the message names it), or the
            annotation file is refused (``bottomup.data.annotations.CocoKeypointAnnotations``).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    names = list(data_cfg.keypoint_names)
    flip_index = flip_index_from_pairs(names, [list(p) for p in data_cfg.flip_pairs])
    targets = settings_from_config(TargetSettings, data_cfg)
    augmentation = settings_from_config(AugmentationSettings, data_cfg.augmentation, strict=True)
    encoder = TargetEncoder(targets, len(names), strides, flip_index)
    augment = Augmentation(augmentation, targets.input_size, strides, flip_index)
    source = CocoKeypointAnnotations(
        str(data_cfg[f"{split}_ann"]),
        str(data_cfg[f"{split}_images"]),
        names,
        settings_from_config(AnnotationSettings, data_cfg),
        require_boxes=targets.scale_aware_sigma,
        keys=(f"data.{split}_ann", f"data.{split}_images"),
    )
    return KeypointDataset(source, augment, encoder, train=train, seed=seed)


def build_train_loader(
    dataset: KeypointDataset, data_cfg: DictConfig, dist_info: DistInfo, seed: int, device: torch.device
) -> tuple[DataLoader, EpochSampler]:
    """The training ``DataLoader`` (``data.batch_size`` per process, ``data.num_workers``) over an
    :class:`~bottomup.engine.trainer.EpochSampler`.

    Raises:
        ValueError: a batch size < 1, negative workers, or a batch larger than the images of one process (the
            message names ``data.batch_size`` / ``data.num_workers``).
    """
    workers = int(data_cfg.num_workers)
    batch_size = int(data_cfg.batch_size)
    if batch_size < 1:
        raise ValueError(f"data.batch_size must be >= 1 (images per process and step), got {batch_size}")
    if workers < 0:
        raise ValueError(f"data.num_workers must be >= 0 (0 = load in the main process), got {workers}")
    sampler = EpochSampler(len(dataset), dist_info, seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        drop_last=len(sampler) >= batch_size,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
    )
    if len(loader) == 0:
        raise ValueError(f"data.batch_size={batch_size} is larger than the {len(sampler)} training images per process")
    return loader, sampler


def build_train_state(cfg: DictConfig, model: nn.Module, iters_per_epoch: int, device: torch.device) -> TrainState:
    """A fresh :class:`~bottomup.engine.trainer.TrainState`: ``optim`` + ``schedule`` over ``model``'s parameters,
    a ``GradScaler`` enabled for ``trainer.precision=fp16``, and ``cfg`` (resolved YAML) to save in checkpoints."""
    optimizer, scheduler = build_optimizer(cfg.optim, cfg.schedule, model.parameters(), iters_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.trainer.precision == "fp16")
    return TrainState(model, optimizer, scheduler, scaler, config=OmegaConf.to_yaml(cfg, resolve=True))


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


class ExperimentRequiredError(ValueError):
    """A weights file that does not say which network it is (an official ``.pth``, or a project checkpoint with no
    config): :func:`load_model` needs ``experiment`` (a name in ``conf/experiment``) or a config."""


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
    ``{"state_dict": ...}`` state dict), or a project checkpoint whose config is missing. ``model.pretrained``
    is never loaded (the checkpoint's weights replace it).

    Args:
        path: the file; read with ``torch.load(weights_only=True)``, which never runs code from the file.
        cfg: a composed config to fall back on.
        experiment: a name in ``conf/experiment`` to fall back on when ``cfg`` is not given.
        info: a dict to receive ``"metrics"`` (a project checkpoint's, e.g. ``best_ap``; else empty) and
            ``"summary"`` (:func:`describe_model`).

    Returns:
        ``(model, config, kind)``: the model on CPU with the weights loaded (train mode as built), the config it was
        built from (the saved one, else ``cfg`` / the composed experiment), and ``"project"`` or ``"official"``.

    Raises:
        FileNotFoundError: no such file.
        bottomup.engine.checkpoint.CheckpointError: the file is not a loadable weights-only checkpoint.
        ExperimentRequiredError: (a ``ValueError``) a file without a config and neither ``cfg`` nor ``experiment``.
        RuntimeError: weights that do not fit the network (the message lists the mismatches).
    """
    name = os.fspath(path)
    checkpoint = load_checkpoint(name)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"checkpoint {name} holds a {type(checkpoint).__name__}, not a state_dict or a checkpoint of this project"
        )
    config = saved_config(checkpoint, name)
    if config is None:
        if cfg is not None:
            config = cfg
        elif experiment is not None:
            config = compose("train", experiment=experiment)
        else:
            what = (
                "has no 'config'"
                if is_project_checkpoint(checkpoint)
                else "looks like an official HigherHRNet state_dict (no 'model'/'config' keys)"
            )
            raise ExperimentRequiredError(
                f"checkpoint {name} {what}; pass experiment=<name in conf/experiment>, e.g. experiment='higherhrnet_w32'"
            )
    model = build_model(config.model, pretrained=False)
    if info is not None:
        info["metrics"] = dict(checkpoint.get("metrics") or {}) if is_project_checkpoint(checkpoint) else {}
        info["step"] = checkpoint.get("step") if is_project_checkpoint(checkpoint) else None
        info["summary"] = describe_model(
            config, info["metrics"], kind="project" if is_project_checkpoint(checkpoint) else "official"
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
    load_official_checkpoint(model, checkpoint)  # raises RuntimeError with a diagnosis on mismatch
    return model, config, "official"


def describe_model(config: DictConfig, metrics: dict[str, Any] | None = None, kind: str = "project") -> str:
    """One line on what a checkpoint is: its data set, network and best validation AP, e.g.
    ``"synthetic data (17 keypoints), HigherHRNet W16, input 160, best val AP 0.612"``."""
    data = config.get("data") or {}
    model = config.get("model") or {}
    target = str(model.get("_target_", "")).rsplit(".", 1)[-1] or "network"
    parts = [f"{data.get('name', '?')} data ({data.get('num_keypoints', '?')} keypoints)"]
    swahr = " + SWAHR" if model.get("swahr") else ""
    parts.append(f"{target}{swahr} W{model.get('width', '?')}, input {data.get('input_size', '?')}")
    ap = (metrics or {}).get("best_ap")
    if kind == "official":
        parts.append("official weights (no metrics stored)")
    elif ap is not None and float(ap) >= 0:
        parts.append(f"best val AP {float(ap):.3f}")
    else:
        parts.append("never evaluated")
    return ", ".join(parts)


def checkpoint_state_dict(checkpoint: Any, name: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The weights of a loaded checkpoint as a plain ``state_dict``: a project checkpoint's ``model``, an official
    HigherHRNet / SWAHR ``.pth`` (raw, ``{"state_dict": ...}``), ``module.`` (DDP) / ``_orig_mod.`` prefixes
    stripped (``bottomup.models.weights.holds_weights`` / ``unwrap_state_dict``).

    Raises:
        CheckpointError: neither (the message names ``name``).
    """
    if not holds_weights(checkpoint):
        raise CheckpointError(
            f"checkpoint {name} holds no weights (not a last.pt / best.pt of this project nor an official "
            "HigherHRNet state_dict)"
        )
    return unwrap_state_dict(checkpoint)


def load_initial_weights(model: nn.Module, path: str | os.PathLike, key: str = "checkpoint") -> dict[str, list[str]]:
    """Start training from the weights in ``path`` (fine-tuning): every tensor whose name and shape fit ``model``.

    The prediction head (:data:`HEAD_PREFIXES`) may differ in shape, e.g. a COCO checkpoint (K = 17) fine-tuned on
    a data set with other keypoints: those tensors keep ``model``'s fresh initialisation and a warning names them.
    Anything else that does not fit -- backbone tensors of other shapes (another ``model.width``), missing from
    the file or only in it (another ``model.stage_modules`` / ``model.stem_blocks``) -- is an error, since training would silently start from a
    half-random network.

    Args:
        model: the freshly built network (CPU or device); changed in place.
        path: a ``last.pt`` / ``best.pt`` of this project or an official HigherHRNet / SWAHR ``.pth``, read
            weights-only (no code from the file runs).
        key: the config key ``path`` came from, for the messages.

    Returns:
        ``{"loaded": [...], "reinitialised": [...], "ignored": [...]}``: tensor names loaded from the file, kept
        fresh (head tensors of another shape or missing), and head tensors in the file but not in ``model``.

    Raises:
        FileNotFoundError / CheckpointError: unreadable file, or backbone weights that do not fit (the message
            gives the file's width and K against the model's).
    """
    name = os.fspath(path)
    state = checkpoint_state_dict(load_checkpoint(name, key=key), name)
    own = model.state_dict()
    split = match_for_finetuning(state, own, HEAD_PREFIXES)
    loaded, reinit, ignored, bad = split["loaded"], split["reinitialised"], split["ignored"], split["unfit"]
    if bad or not loaded:
        described = describe_weights(state)
        ours = describe_weights(own)
        raise CheckpointError(
            f"{key}={name} does not fit the model: {len(bad)} backbone tensors missing, extra or of another shape "
            f"(e.g. {bad[0] if bad else 'all'}); the file is {described}, the config builds {ours}. Set model.width "
            "/ model.stage_modules / model.blocks_per_branch / model.stem_blocks to the checkpoint's"
        )
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    log.info("%s=%s: loaded %d of %d tensors", key, name, len(loaded), len(own))
    if reinit:
        log.warning(
            "%s=%s: %d head tensors re-initialised because the file's head predicts other outputs (%s; the "
            "config: %s), e.g. %s",
            key, name, len(reinit), describe_weights(state), describe_weights(own), reinit[0],
        )  # fmt: skip
    if ignored:
        log.info("%s=%s: %d tensors of the file are not in this model (e.g. %s)", key, name, len(ignored), ignored[0])
    return {"loaded": loaded, "reinitialised": reinit, "ignored": ignored}


def trainer_settings(cfg: DictConfig) -> TrainerSettings:
    """The :class:`~bottomup.engine.settings.TrainerSettings` of ``cfg.trainer``.

    Raises:
        ValueError: a value out of its range, or a key that is no setting (``+trainer.epoch=3``: Hydra's ``+``
            adds keys past the schema), the message naming the ``trainer.*`` key.
    """
    return settings_from_config(TrainerSettings, cfg.trainer, strict=True)


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


def evaluation_config(cfg: DictConfig, overrides: Sequence[str] = ()) -> tuple[nn.Module, dict[str, Any]]:
    """The network of ``cfg.checkpoint`` and ``cfg`` completed for its evaluation (a composed ``eval`` config,
    changed in place; the data root prepared).

    The network comes from :func:`load_model` (the config saved in a project checkpoint, else ``cfg.model`` for an
    official ``.pth``); a project checkpoint's network config replaces ``cfg.model``, its test-time input size (its
    training scale) replaces ``test.input_size`` unless ``overrides`` sets ``test.input_size`` or
    ``data.input_size``, and with ``data=synthetic`` the generated set it was trained on is used unless
    ``overrides`` sets ``data.root`` or ``data.synthetic.*``.

    Args:
        cfg: the composed ``eval`` config.
        overrides: the command line's ``key=value`` overrides (Hydra's task overrides).

    Returns:
        ``(model, info)``: the network on the CPU; ``info["summary"]``, a line describing it.

    Raises:
        ValueError: ``checkpoint`` or ``data.root`` not set, an unknown ``data.*`` / ``test.*`` key
            (:func:`check_run_config`), or a model whose K differs from the data's.
        FileNotFoundError / bottomup.engine.checkpoint.CheckpointError: the checkpoint cannot be read.
    """
    check_run_config(cfg)
    if OmegaConf.is_missing(cfg, "checkpoint") or not cfg.get("checkpoint"):
        raise ValueError(
            "checkpoint is not set: pass checkpoint=PATH (a last.pt / best.pt of this project, or an official "
            "HigherHRNet .pth with the matching experiment=...)"
        )
    generated = cfg.data.get("root") is None and cfg.data.get("synthetic") is not None
    if not generated:  # a generated set is made once the checkpoint has said which one
        prepare_data_root(cfg.data)
    path = str(cfg.checkpoint)
    info: dict[str, Any] = {}
    model, ran, kind = load_model(path, cfg=cfg, info=info)
    log.info("loaded %s checkpoint %s: %s", kind, path, info["summary"])
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
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
    if generated:
        prepare_data_root(cfg.data)
    return model, info


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


register_schemas()

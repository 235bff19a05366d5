"""Data sets from ``conf/data``: the data root (a download, the generated synthetic set), the keypoint layout, the
training set and loader, the validation set."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader

from bottomup.build.config import settings_from_config, test_settings
from bottomup.core.keypoints import KeypointLayout, flip_index_from_pairs
from bottomup.data.annotations import CocoKeypointAnnotations
from bottomup.data.augmentation import Augmentation
from bottomup.data.batch import collate
from bottomup.data.dataset import KeypointDataset
from bottomup.data.encoding import TargetEncoder
from bottomup.data.settings import AnnotationSettings, AugmentationSettings, TargetSettings
from bottomup.engine.distributed import DistInfo
from bottomup.engine.evaluator import ValSet
from bottomup.engine.trainer import EpochSampler

log = logging.getLogger("bottomup.build")


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
    ``trainer`` is checked by :func:`~bottomup.build.config.trainer_settings`. Configs saved in checkpoints are not
    checked (an older version's keys are ignored there).

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


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"annotation file {path} cannot be read as JSON ({e})") from e


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
    augment = Augmentation(augmentation, targets.input_size, strides, flip_index, udp=targets.udp)
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

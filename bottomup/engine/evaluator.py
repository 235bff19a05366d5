"""COCO / CrowdPose keypoint evaluation of a model.

* :func:`coco_keypoint_eval` scores results in the COCO format with the standard evaluators: pycocotools
  ``COCOeval`` (``iouType="keypoints"``, OKS with ``kpt_oks_sigmas``, at most 20 people per image) for COCO, or
  faster-coco-eval's ``keypoints_crowd`` evaluation for CrowdPose (OKS area from the box, ``0.53 * w * h``,
  and the easy / medium / hard split by ``crowdIndex``, as the official CrowdPose toolkit).
* :func:`evaluate_model` runs the test-time pipeline (:mod:`bottomup.engine.inference`) over every image of the
  validation annotation file, writes the results JSON and returns the scores (called from training and by
  ``python -m bottomup.evaluate``).
Results format (one dict per detected person), as the COCO keypoint challenge:
``{"image_id": int, "category_id": 1, "keypoints": [x1, y1, s1, ..., xK, yK, sK], "score": float}``,
coordinates in original-image pixels.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bottomup.core.io import write_json
from bottomup.core.keypoints import KeypointLayout
from bottomup.data.annotations import keypoint_categories
from bottomup.data.io import ImageReadError, load_annotated_image
from bottomup.data.validate import check_keypoint_annotations
from bottomup.engine.people import people_to_results

log = logging.getLogger("bottomup.evaluate")

__all__ = [
    "COCO_STAT_NAMES",
    "CROWDPOSE_STAT_NAMES",
    "coco_keypoint_eval",
    "people_to_results",
    "EvalShard",
    "evaluate_model",
    "evaluate_into",
]

#: Keys of :func:`coco_keypoint_eval` for ``eval_type="coco"``, in pycocotools' ``stats`` order.
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
#: Keys for ``eval_type="crowdpose"``, in faster-coco-eval's ``keypoints_crowd`` ``stats`` order.
CROWDPOSE_STAT_NAMES = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")
_STAT_NAMES = {"coco": COCO_STAT_NAMES, "crowdpose": CROWDPOSE_STAT_NAMES}


def _load_json(path: str | os.PathLike, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from e


def _check_results(results: Sequence[dict], num_keypoints: int, gt_image_ids: set[int]) -> list[dict]:
    """Copy ``results`` (the evaluators add fields in place) and check their format."""
    out = []
    for i, r in enumerate(results):
        for key in ("image_id", "keypoints", "score"):
            if key not in r:
                raise ValueError(f"result {i} has no {key!r}; expected image_id, category_id, keypoints, score")
        kpts = [float(v) for v in np.asarray(r["keypoints"], dtype=np.float64).reshape(-1)]
        if len(kpts) != 3 * num_keypoints:
            raise ValueError(
                f"result {i} (image {r['image_id']}) has {len(kpts)} keypoint values; the annotation file has "
                f"{num_keypoints} keypoints, so 3 * {num_keypoints} = {3 * num_keypoints} values [x, y, score] are expected"
            )
        if int(r["image_id"]) not in gt_image_ids:
            raise ValueError(f"result {i} has image_id {r['image_id']}, which is not in the annotation file")
        out.append(
            {
                "image_id": int(r["image_id"]),
                "category_id": int(r.get("category_id", 1)),
                "keypoints": kpts,
                "score": float(r["score"]),
            }
        )
    return out


def coco_keypoint_eval(
    results: Sequence[dict],
    ann_file: str | os.PathLike,
    *,
    oks_sigmas: Sequence[float],
    eval_type: str = "coco",
    image_ids: Sequence[int] | None = None,
    verbose: bool = True,
) -> dict[str, float]:
    """Score keypoint results against an annotation file (OKS-based AP / AR).

    ``eval_type="coco"``: pycocotools ``COCOeval(iouType="keypoints")`` with ``params.kpt_oks_sigmas =
    oks_sigmas`` and its keypoint defaults (``maxDets=[20]``, areas all / medium / large); keys
    :data:`COCO_STAT_NAMES` (AP = mean over OKS 0.50:0.95).

    ``eval_type="crowdpose"``: faster-coco-eval ``COCOeval_faster(iouType="keypoints_crowd", use_area=False)``,
    the official CrowdPose protocol (OKS scale ``0.53 * bbox area``, ``maxDets=20``); keys
    :data:`CROWDPOSE_STAT_NAMES`. ``AP_easy/medium/hard`` are the AP over the images with ``crowdIndex``
    < 0.01, in [0.01, 0.85) and >= 0.85 (the thresholds of the official crowdposetools ``get_type_result``);
    a split with no image scores -1 (the COCO convention for "nothing to evaluate").

    Args:
        results: COCO keypoint results ``{"image_id", "category_id", "keypoints": [x, y, score] * K, "score"}``
            in original-image pixels; not modified.
        ann_file: the ground-truth annotation JSON (COCO format; CrowdPose images need ``crowdIndex``).
        oks_sigmas: K per-keypoint OKS constants (``data.oks_sigmas``).
        eval_type: ``"coco"`` or ``"crowdpose"``.
        image_ids: evaluate only these images (e.g. the first N when evaluating a subset); ``None`` = all images
            of ``ann_file``.
        verbose: print the evaluator's standard summary table.

    Returns:
        ``{name: float}``. Empty ``results`` give all zeros (with a warning) instead of the evaluators' crash.

    Raises:
        ValueError: unknown ``eval_type``, a malformed result, a result for an image not in ``ann_file``,
            ``oks_sigmas`` whose length differs from the annotation file's number of keypoints.
        FileNotFoundError: ``ann_file`` does not exist.
    """
    if eval_type not in _STAT_NAMES:
        raise ValueError(f"eval_type must be one of {list(_STAT_NAMES)} (data.eval_type), got {eval_type!r}")
    names = _STAT_NAMES[eval_type]
    gt = _load_json(ann_file, "annotation file")
    sigmas = np.asarray(list(oks_sigmas), dtype=np.float64)
    cats = gt.get("categories") or []
    num_keypoints = len(cats[0].get("keypoints", [])) if cats else 0
    if not num_keypoints:
        kp_anns = [a for a in gt.get("annotations", []) if a.get("keypoints")]
        num_keypoints = len(kp_anns[0]["keypoints"]) // 3 if kp_anns else len(sigmas)
    if len(sigmas) != num_keypoints:
        raise ValueError(
            f"oks_sigmas has {len(sigmas)} values but {ann_file} has {num_keypoints} keypoints: "
            "use the data config that matches the annotation file (data.oks_sigmas)"
        )
    check_keypoint_annotations(gt, ann_file, num_keypoints)  # non-finite ground truth would be scored
    all_ids = [int(img["id"]) for img in gt["images"]]
    results = _check_results(results, num_keypoints, set(all_ids))
    if image_ids is not None:
        keep = {int(i) for i in image_ids}
        unknown = keep.difference(all_ids)
        if unknown:
            raise ValueError(f"image_ids not in {ann_file}: {sorted(unknown)[:10]}")
        results = [r for r in results if r["image_id"] in keep]
    if not results:
        warnings.warn(
            f"no keypoint results to evaluate against {ann_file} (no person detected): all scores are 0",
            RuntimeWarning,
            stacklevel=2,
        )
        return dict.fromkeys(names, 0.0)

    out = io.StringIO() if not verbose else None
    with contextlib.redirect_stdout(out) if out is not None else contextlib.nullcontext():
        if eval_type == "coco":
            stats = _eval_pycocotools(gt, results, sigmas, image_ids)
        else:
            stats = _eval_crowdpose(gt, results, sigmas, image_ids, verbose)
    return {name: float(v) for name, v in zip(names, stats, strict=False)}


def _eval_pycocotools(gt: dict, results: list[dict], sigmas: np.ndarray, image_ids: Sequence[int] | None) -> Any:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # "loading annotations..." chatter
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
    ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
    ev.params.kpt_oks_sigmas = sigmas
    if image_ids is not None:
        ev.params.imgIds = sorted({int(i) for i in image_ids})
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    ev.summarize()  # prints the standard table
    return ev.stats


def _eval_crowdpose(
    gt: dict, results: list[dict], sigmas: np.ndarray, image_ids: Sequence[int] | None, verbose: bool
) -> Any:
    from faster_coco_eval import COCO, COCOeval_faster

    if image_ids is not None:  # the easy/medium/hard split reads the images of the GT itself: filter it
        keep = {int(i) for i in image_ids}
        gt = {
            **gt,
            "images": [img for img in gt["images"] if int(img["id"]) in keep],
            "annotations": [a for a in gt["annotations"] if int(a["image_id"]) in keep],
        }
    missing = [img["id"] for img in gt["images"] if "crowdIndex" not in img]
    if missing:
        raise ValueError(
            f"eval_type=crowdpose needs a 'crowdIndex' in every image record; missing for images {missing[:10]}: "
            "use data.eval_type=coco for annotation files without it"
        )
    quiet = lambda *args, **kwargs: None  # noqa: E731
    coco_gt = COCO(gt, use_deepcopy=True, print_function=quiet)
    coco_dt = coco_gt.loadRes(results)
    ev = COCOeval_faster(
        coco_gt,
        coco_dt,
        iouType="keypoints_crowd",
        kpt_oks_sigmas=list(sigmas),
        use_area=False,
        print_function=print if verbose else quiet,
    )
    ev.print_function = quiet
    ev.evaluate()
    ev.accumulate()
    ev.print_function = print if verbose else quiet
    ev.summarize()  # prints the standard table, easy / medium / hard included
    return ev.all_stats


# ------------------------------------------------------------------------------------------ model evaluation
@dataclass(frozen=True)
class ValSet:
    """A validation set in COCO format: what :func:`evaluate_model` reads (``bottomup.build.val_set`` makes one
    from ``cfg.data``).

    Attributes:
        ann_file: the annotation file (``data.val_ann``).
        image_dir: its image folder (``data.val_images``).
        layout: the keypoint layout (K, OKS sigmas).
        eval_type: ``"coco"`` (pycocotools) or ``"crowdpose"`` (``data.eval_type``).
        name: the data config's name, for messages (``data.name``).
    """

    ann_file: Path
    image_dir: Path
    layout: KeypointLayout
    eval_type: str = "coco"
    name: str = ""


@dataclass(frozen=True)
class EvalShard:
    """This process's share of a sharded evaluation (``torchrun``): rank ``rank`` of ``world_size`` runs the images
    ``rank, rank + world_size, ...`` of the annotation file; the people found are gathered on rank 0, which writes
    the results and scores them; the scores are sent back to every rank. The collectives come as callables, so
    that this module stays torch-free (:func:`bottomup.engine.distributed.evaluation_shard` makes them from
    ``torch.distributed``).

    Attributes:
        rank, world_size: this process's rank and the number of processes.
        gather: ``obj -> [obj of rank 0, obj of rank 1, ...]`` on rank 0, ``None`` on the others.
        broadcast: ``obj -> rank 0's obj`` on every rank.
    """

    rank: int
    world_size: int
    gather: Callable[[Any], list[Any] | None]
    broadcast: Callable[[Any], Any]

    def __post_init__(self) -> None:
        if not 0 <= int(self.rank) < int(self.world_size):
            raise ValueError(f"EvalShard: rank {self.rank} is not in [0, world_size={self.world_size})")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def evaluate_model(
    estimator: Callable[[np.ndarray], Any],
    val: ValSet,
    *,
    output_json: str | os.PathLike,
    max_images: int | None = None,
    progress: bool = True,
    shard: EvalShard | None = None,
) -> dict[str, float]:
    """Run the test-time pipeline on the validation set, write the results JSON and score it.

    Every image of ``val.ann_file`` is processed (with or without annotated people, as the official evaluation)
    once, by this process or, with ``shard``, by one of the ranks, by ``estimator`` (``bottomup.engine.estimator.PoseEstimator`` on any backend, the pipeline of the Python API
    and the CLI). An image that cannot be read, or whose size differs from its record, is skipped with a warning.
    A torch network's train / eval mode is restored afterwards.

    Args:
        estimator: ``image (H, W, 3) uint8 RGB -> Prediction`` (a ``PoseEstimator``).
        val: the annotation file, image folder, layout (OKS sigmas) and evaluation type.
        output_json: where to write the results.
        max_images: evaluate the first N images of the annotation file only (AP over those images); ``None`` =
            all.
        progress: show a tqdm bar (rank 0's, with ``shard``).
        shard: this rank's share (:class:`EvalShard`); every rank of the group must call this function. The
            results are put in the order of the images in the annotation file, so that the results file and the
            scores equal those of one process.

    Returns:
        the :func:`coco_keypoint_eval` scores (``AP``, ``AP50``, ..., see :data:`COCO_STAT_NAMES` /
        :data:`CROWDPOSE_STAT_NAMES`), on every rank.

    Raises:
        FileNotFoundError: the annotation file or image folder does not exist.
        ValueError: the network's number of keypoints differs from the data's.
    """
    ann_file, image_dir = Path(val.ann_file), Path(val.image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"data.val_images={image_dir} is not a folder: point data.root at your data set")
    k = val.layout.num_keypoints
    gt = _load_json(ann_file, "data.val_ann")
    check_keypoint_annotations(gt, ann_file, k)
    category_id = int(keypoint_categories(gt, ann_file)[0]["id"])  # results carry the data set's id
    images = list(gt.get("images", []))
    if max_images is not None:
        images = images[: int(max_images)]
    backend = getattr(estimator, "backend", None)
    net = getattr(backend, "source", None)  # a torch network (TorchBackend)
    model_k = getattr(net, "num_keypoints", None) or getattr(estimator, "num_keypoints", k)
    if model_k != k:
        raise ValueError(
            f"the model predicts {model_k} keypoints but data config {val.name!r} has {k}: use the data config of "
            "the data set the model was trained on (data=crowdpose for CrowdPose's 14 keypoints, data=coco for "
            "COCO's 17, or your own)"
        )
    output_json = Path(output_json)

    rank, world = (shard.rank, shard.world_size) if shard is not None else (0, 1)
    by_image: dict[int, list[dict]] = {}  # index in ``images`` -> people found
    failed: list[str] = []
    was_training = bool(getattr(net, "training", False))
    try:
        mine = range(rank, len(images), world)
        for index in tqdm(mine, desc="evaluate", disable=not progress or rank != 0, dynamic_ncols=True, leave=False):
            img = images[index]
            path = image_dir / str(img["file_name"])
            try:
                image = load_annotated_image(path, img.get("height"), img.get("width"))  # the annotations' frame
                if img.get("height") and img.get("width") and image.shape[:2] != (img["height"], img["width"]):
                    raise ImageReadError(
                        path,
                        f"it is {image.shape[1]}x{image.shape[0]} px but {ann_file} says {img['width']}x{img['height']}",
                    )
            except ImageReadError as e:
                log.warning("%s; skipped", e)
                failed.append(str(path))
                continue
            pred = estimator(image)
            by_image[index] = people_to_results(int(img["id"]), pred.keypoints, pred.scores, category_id=category_id)
    finally:
        if net is not None:
            net.train(was_training)
    if shard is not None and world > 1:
        parts = shard.gather((by_image, failed))
        if not shard.is_main:
            return shard.broadcast(None)
        by_image, failed = {}, []
        for part_images, part_failed in parts or []:
            by_image.update(part_images)
            failed.extend(part_failed)
    results = [person for index in sorted(by_image) for person in by_image[index]]
    stats = _write_and_score(results, failed, images, output_json, val, max_images)
    return shard.broadcast(stats) if shard is not None and world > 1 else stats


def _write_and_score(
    results: list[dict],
    failed: list[str],
    images: list[dict],
    output_json: Path,
    val: ValSet,
    max_images: int | None,
) -> dict[str, float]:
    """Rank 0's end of :func:`evaluate_model`: the results file and :func:`coco_keypoint_eval`."""
    if failed:
        log.warning("%d of %d validation images could not be read (see above)", len(failed), len(images))

    write_json(output_json, results)
    log.info("%d people in %d images -> %s", len(results), len(images), output_json)
    return coco_keypoint_eval(
        results,
        Path(val.ann_file),
        oks_sigmas=val.layout.oks_sigmas,
        eval_type=val.eval_type,
        image_ids=[int(img["id"]) for img in images] if max_images is not None else None,
    )


def evaluate_into(
    estimator: Callable[[np.ndarray], Any],
    val: ValSet,
    out_dir: str | os.PathLike,
    *,
    record: dict[str, Any],
    config_text: str = "",
    max_images: int | None = None,
    progress: bool = True,
    shard: EvalShard | None = None,
) -> dict[str, float]:
    """:func:`evaluate_model` with the run's record written into ``out_dir`` (the body of
    ``python -m bottomup.evaluate``): ``results_val.json`` (COCO results), ``metrics.json`` (``record`` and the
    AP table under ``"metrics"``) and, when ``config_text`` is given, ``config.yaml`` (the config that ran; an
    existing ``.hydra/config.yaml`` is replaced by it too). Prints the AP table and the paths.

    Args:
        estimator, val, max_images, progress, shard: as :func:`evaluate_model` (with ``shard`` rank 0 writes the
            files and prints).
        out_dir: the output folder.
        record: what ``metrics.json`` says about the run (checkpoint, model, data, test settings, ...).
        config_text: the YAML of the config that ran.

    Returns:
        the AP table (as :func:`evaluate_model`).

    Raises:
        FileNotFoundError / ValueError: as :func:`evaluate_model`.
    """
    out = Path(out_dir)
    output_json = out / "results_val.json"
    stats = evaluate_model(
        estimator, val, output_json=output_json, max_images=max_images, progress=progress, shard=shard
    )
    if shard is not None and not shard.is_main:
        return stats
    if config_text:
        (out / "config.yaml").write_text(config_text)
        if (out / ".hydra" / "config.yaml").is_file():
            (out / ".hydra" / "config.yaml").write_text(config_text)
    metrics = write_json(out / "metrics.json", {**record, "metrics": {k: float(v) for k, v in stats.items()}})
    print("\n" + "  ".join(f"{k} {v:.4f}" for k, v in stats.items()))
    print(f"results: {output_json}, metrics: {metrics}")
    return stats

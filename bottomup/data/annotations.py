"""COCO-format keypoint annotations (COCO, CrowdPose, custom): the file read and checked once, then per image its
people, their box sizes and the ignore mask, all in the original image frame (pixels).

Reference: official HigherHRNet ``CocoKeypoints`` (``get_joints`` / ``get_mask``, ``remove_images_without_annotations``).
Letters: N people, K keypoints, H x W image.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from bottomup.data.io import ImageReadError, load_annotated_image, load_image
from bottomup.data.settings import AnnotationSettings
from bottomup.data.validate import check_keypoint_annotations

__all__ = ["CocoKeypointAnnotations", "People", "keypoint_categories"]

logger = logging.getLogger(__name__)


class People(NamedTuple):
    """The kept people of one image and its ignore mask, in original pixels.

    Attributes:
        keypoints: ``(N, K, 3)`` float64 ``(x, y, visibility)``.
        mask: ``(H, W)`` float32, 1 = keep, 0 = ignore.
        box_sizes: ``(N,)`` float64 ``max(bbox w, bbox h)``; 0 for a person without a box.
    """

    keypoints: np.ndarray
    mask: np.ndarray
    box_sizes: np.ndarray


def keypoint_categories(data: dict, ann_file: str | os.PathLike = "<annotations>") -> list[dict]:
    """The keypoint categories of a parsed COCO keypoint file: those named ``person`` if any, else every
    category with a ``keypoints`` list (a custom data set's ``"hand"``, ``"animal"``, ...). They share one keypoint
    list; their ``id`` is what annotations and results carry as ``category_id``.

    Raises:
        ValueError: no category has ``keypoints`` (e.g. an ``instances_*.json``), or two disagree on the list (the
            message names ``ann_file``).
    """
    cats = [c for c in data.get("categories") or [] if isinstance(c, dict) and c.get("keypoints")]
    if not cats:
        raise ValueError(
            f"annotation file {ann_file} has no category with a 'keypoints' list; it is not a keypoint file "
            "(use person_keypoints_*.json, not instances_*.json)"
        )
    persons = [c for c in cats if c.get("name") == "person"] or cats
    names = list(persons[0]["keypoints"])
    for c in persons[1:]:
        if list(c["keypoints"]) != names:
            raise ValueError(f"annotation file {ann_file}: keypoint categories disagree on the keypoint list")
    return persons


def _load_coco(ann_file: str) -> tuple[COCO, list[int], list[str]]:
    """Parse and validate a COCO keypoint json; returns (COCO, keypoint category ids, keypoint names)."""
    try:
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"annotation file {ann_file} is not valid JSON ({e}); re-download it") from e
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(
            f"annotation file {ann_file} is not a COCO keypoint file: missing {missing}. Expected the official "
            "COCO 'person_keypoints_*.json' / CrowdPose 'crowdpose_*.json' format (data.train_ann / data.val_ann)"
        )
    persons = keypoint_categories(data, ann_file)
    names = list(persons[0]["keypoints"])
    check_keypoint_annotations(data, ann_file, len(names))
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco, [int(c["id"]) for c in persons], names


def _region_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """``(H, W)`` uint8 0/1 mask of an annotation's segmentation (polygons, RLE or uncompressed RLE).

    Falls back to the ``bbox`` rectangle when there is no segmentation (CrowdPose records may lack it).

    Raises:
        ValueError: an RLE whose ``size`` is not ``[height, width]``, or a segmentation pycocotools cannot decode
            (the caller adds the file and the ids).
    """
    seg = ann.get("segmentation")
    if not seg:
        bbox = ann.get("bbox")
        if not bbox or len(bbox) != 4:
            return np.zeros((height, width), np.uint8)
        x, y, w, h = (float(v) for v in bbox)
        seg = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    if isinstance(seg, dict):
        size = _rle_size(seg)
        if size != [height, width]:
            raise ValueError(
                f"its segmentation RLE has 'size' {seg.get('size')!r} ([height, width]) but the image is "
                f"[{height}, {width}] (height {height}, width {width})"
            )
    try:
        if isinstance(seg, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        elif isinstance(seg.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(seg, height, width)
        else:  # compressed RLE
            rle = seg
        m = mask_utils.decode(rle)
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as e:
        raise ValueError(f"its segmentation cannot be decoded ({type(e).__name__}: {e})") from e
    if m.ndim == 3:
        m = m.max(axis=2)
    return m


def _keep_runs(ignore: np.ndarray) -> bytes:
    """Row-major run lengths (uint32 bytes) of the keep-mask of an ``(H, W)`` 0/1 ignore mask: alternately keep and
    ignore pixels, starting with a keep run (of length 0 when the first pixel is ignored)."""
    flat = ignore.reshape(-1) != 0
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], starts, [flat.size]))
    lengths = np.diff(bounds)
    if flat[0]:
        lengths = np.concatenate(([0], lengths))
    return lengths.astype(np.uint32).tobytes()


def _expand_keep_runs(runs: bytes, height: int, width: int) -> np.ndarray:
    """``(H, W)`` uint8 keep-mask, 255 = keep, of :func:`_keep_runs`."""
    lengths = np.frombuffer(runs, np.uint32)
    values = np.zeros(lengths.size, np.uint8)
    values[::2] = 255
    return np.repeat(values, lengths).reshape(height, width)


def _rle_size(seg: dict) -> list[int] | None:
    """An RLE segmentation's ``size`` as ``[height, width]`` ints, ``None`` when it has no usable one."""
    size = seg.get("size")
    try:
        return [int(v) for v in size] if size is not None and len(size) == 2 else None
    except (TypeError, ValueError):
        return None


def _num_labeled(ann: dict) -> int:
    """Labeled keypoints of an annotation (its ``num_keypoints``, else the visibilities > 0 counted)."""
    if "num_keypoints" in ann:
        return int(ann["num_keypoints"])
    kps = ann.get("keypoints") or []
    return int(np.count_nonzero(np.asarray(kps, dtype=np.float64)[2::3] > 0))


def _box_size(ann: dict) -> float:
    """``max(w, h)`` of the annotation's ``bbox`` in original px (official scale-aware sigma); 0 without one."""
    box = ann.get("bbox")
    if not box or len(box) != 4:
        return 0.0
    return float(max(box[2], box[3]))


class CocoKeypointAnnotations:
    """A COCO keypoint file read and checked, and the folder of its images.

    Kept images (``image_ids``): those with at least one annotation of the keypoint category (official
    ``remove_images_without_annotations``) whose file exists in ``image_dir``, in the file's image order, at most
    ``settings.max_images``. Images missing on disk are left out with one warning giving their count; none on disk
    is an error (a wrong ``image_dir`` would otherwise train zero steps). Kept
    people of an image: non-crowd, or crowd with labeled keypoints (official filter). Ignore mask: 0 on crowd regions
    and on the segmentation (else the ``bbox``) of people with no labeled keypoint.

    Args:
        ann_file: COCO keypoint json (``data.train_ann``); CrowdPose files without ``area`` / ``segmentation``
            are accepted.
        image_dir: folder of the images named by ``file_name`` (``data.train_images``).
        keypoint_names: K names in channel order (``data.keypoint_names``); the file must list the same.
        settings: which images are used.
        require_boxes: every person with labeled keypoints needs a positive ``bbox`` (``data.scale_aware_sigma``
            derives its sigma from it).
        keys: the config keys of ``ann_file`` and ``image_dir``, for the messages (``("data.val_ann",
            "data.val_images")`` for the validation set).

    Raises:
        FileNotFoundError: ``ann_file`` or ``image_dir`` does not exist, or none of the kept images is in
            ``image_dir`` (the message gives the count, the first missing file name and the key to change).
        ValueError: the json is not a COCO keypoint file or fails ``bottomup.data.validate``, its K differs from
            ``len(keypoint_names)`` (or its names are the same joints in another order), a keypoint list has the
            wrong length, no image has a person annotation, no annotation has a labeled keypoint, or, with
            ``require_boxes``, a person with labeled keypoints has no positive ``bbox``, or an RLE segmentation's
            ``size`` is not its image record's ``[height, width]`` (the message names the annotation id and the
            image id).
    """

    def __init__(
        self,
        ann_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        keypoint_names: Sequence[str],
        settings: AnnotationSettings = AnnotationSettings(),  # noqa: B008 - frozen, shared safely
        require_boxes: bool = False,
        keys: tuple[str, str] = ("data.train_ann", "data.train_images"),
    ) -> None:
        ann_file, image_dir = os.fspath(ann_file), os.fspath(image_dir)
        self.keys = keys
        if not os.path.isfile(ann_file):
            raise FileNotFoundError(
                f"annotation file {ann_file} not found: set data.root (or data.train_ann / data.val_ann) to "
                "the data set in its official layout"
            )
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(
                f"image folder {image_dir} not found: set data.root (or data.train_images / data.val_images) "
                "to the data set in its official layout"
            )
        self.ann_file = ann_file
        self.image_dir = image_dir
        self.keypoint_names = tuple(keypoint_names)
        self.settings = settings
        self.coco, self.cat_ids, json_names = _load_coco(ann_file)
        self._check_names(json_names)
        labeled = self._check_people(require_boxes)
        ids = [
            i
            for i in self.coco.getImgIds()
            if len(self.coco.getAnnIds(imgIds=i, catIds=self.cat_ids, iscrowd=None)) > 0
        ]
        if not ids or not labeled:
            raise ValueError(
                f"annotation file {ann_file} has no image with a usable person annotation "
                f"({len(ids)} images with person annotations, {labeled} annotations with labeled keypoints); "
                "check that data.train_ann is the keypoint file of the data set"
            )
        ids = self._on_disk(ids)
        if settings.max_images is not None:
            ids = ids[: settings.max_images]
        #: the kept images' COCO ids, in the file's order
        self.image_ids: list[int] = ids
        # keep-mask run lengths per (image id, height, width), made on first use in each process (keep_mask)
        self._mask_runs: dict[tuple[int, int, int], bytes] = {}

    def _on_disk(self, ids: list[int]) -> list[int]:
        """``ids`` whose file is in ``image_dir`` (one listing of the folder; names with a sub-folder checked one by
        one); warns with the count of the others.

        Raises:
            FileNotFoundError: none is.
        """
        try:
            listed = set(os.listdir(self.image_dir))
        except OSError:
            listed = set()

        def exists(image_id: int) -> bool:
            name = str(self.coco.imgs[image_id].get("file_name", ""))
            if name in listed:
                return True
            return ("/" in name or os.sep in name) and os.path.isfile(os.path.join(self.image_dir, name))

        present = [i for i in ids if exists(i)]
        if len(present) == len(ids):
            return ids
        ann_key, dir_key = self.keys
        kept = set(present)
        first = next(self.coco.imgs[i].get("file_name") for i in ids if i not in kept)
        where = f"{dir_key}={self.image_dir}: {{}} of {len(ids)} annotated images of {ann_key}={self.ann_file}"
        if not present:
            raise FileNotFoundError(
                where.format(0) + f" exist on disk (first missing: {first}); point {dir_key} at the folder that "
                "holds them"
            )
        logger.warning(
            "%s are missing on disk (first missing: %s); using the other %d",
            where.format(len(ids) - len(present)), first, len(present),
        )  # fmt: skip
        return present

    def _check_names(self, json_names: list[str]) -> None:
        k = len(self.keypoint_names)
        if len(json_names) != k:
            raise ValueError(
                f"annotation file {self.ann_file} has {len(json_names)} keypoints per person ({json_names}) but the "
                f"data config has {k} (data.num_keypoints / data.keypoint_names): use the data config of this "
                "data set (e.g. data=crowdpose for CrowdPose)"
            )
        if json_names != list(self.keypoint_names):
            if sorted(json_names) == sorted(self.keypoint_names):
                raise ValueError(
                    f"annotation file {self.ann_file} lists the keypoints in the order {json_names}, but "
                    f"data.keypoint_names is {list(self.keypoint_names)}; they must be in the same order"
                )
            logger.warning(
                "keypoint names of %s (%s) differ from data.keypoint_names (%s); assuming the same order",
                self.ann_file,
                json_names,
                list(self.keypoint_names),
            )

    def _check_people(self, require_boxes: bool) -> int:
        """Checks keypoint list lengths, and boxes with ``require_boxes``; returns the annotations with labeled joints."""
        k = len(self.keypoint_names)
        labeled = 0
        for ann in self.coco.loadAnns(self.coco.getAnnIds(catIds=self.cat_ids)):
            kps = ann.get("keypoints")
            if kps is not None and len(kps) not in (0, 3 * k):
                raise ValueError(
                    f"annotation file {self.ann_file}: annotation id {ann.get('id')} has {len(kps)} keypoint "
                    f"values, expected 3 * {k} (data.num_keypoints)"
                )
            n_labeled = _num_labeled(ann)
            labeled += n_labeled > 0
            self._check_rle_size(ann)
            if require_boxes and n_labeled > 0 and not _box_size(ann) > 0:
                raise ValueError(
                    f"annotation file {self.ann_file}: annotation id {ann.get('id')} has labeled keypoints but no "
                    f"positive bbox (got {ann.get('bbox')!r}), which data.scale_aware_sigma=true needs for its "
                    "sigma; fix the bbox or set data.scale_aware_sigma=false"
                )
        return labeled

    def _check_rle_size(self, ann: dict) -> None:
        """An RLE segmentation's ``size`` against its image record's ``[height, width]`` (when the record has them),
        before any image is read."""
        seg = ann.get("segmentation")
        info = self.coco.imgs.get(ann.get("image_id"), {})
        if not isinstance(seg, dict) or not info.get("height") or not info.get("width"):
            return
        if _rle_size(seg) != [int(info["height"]), int(info["width"])]:
            raise ValueError(
                f"annotation file {self.ann_file}: annotation id {ann.get('id')} (image id {ann.get('image_id')}): "
                f"its segmentation RLE has 'size' {seg.get('size')!r} ([height, width]) but its image record says "
                f"[{info['height']}, {info['width']}] (height {info['height']}, width {info['width']}); fix the "
                "RLE or the image record"
            )

    @property
    def num_keypoints(self) -> int:
        """K."""
        return len(self.keypoint_names)

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> str:
        """Path of an image file."""
        return os.path.join(self.image_dir, self.coco.imgs[image_id]["file_name"])

    def read_image(self, image_id: int) -> np.ndarray:
        """The image ``(H, W, 3)`` uint8 RGB in its annotations' frame (``bottomup.data.io.load_annotated_image``:
        the stored pixels as COCO reads them, EXIF-upright only when that alone fits the record's size).

        Raises:
            ImageReadError: the file cannot be read, or its size differs from the record's ``width`` / ``height``
                (the annotations are then not in its frame).
        """
        path = self.image_path(image_id)
        info = self.coco.imgs[image_id]
        image = load_annotated_image(path, info.get("height"), info.get("width"))
        height, width = image.shape[:2]
        if info.get("height") and info.get("width") and (int(info["height"]), int(info["width"])) != (height, width):
            raise ImageReadError(
                path,
                f"it is {width}x{height} px but {self.ann_file} says {info['width']}x{info['height']}: its "
                "annotations are not in this image's frame",
            )
        return image

    def people(self, image_id: int, height: int, width: int) -> People:
        """The kept people of an image of ``height x width`` px, their box sizes and its ignore mask.

        Raises:
            ValueError: a segmentation of another size than the image, or one that cannot be decoded (the message
                names the annotation file, the annotation id and the image id).
        """
        keypoints, sizes = self.people_keypoints(image_id)
        return People(keypoints, (self.keep_mask(image_id, height, width) != 0).astype(np.float32), sizes)

    def people_keypoints(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(keypoints (N, K, 3) float64, box_sizes (N,) float64)`` of the kept people of an image (:meth:`people`
        without the mask)."""
        k = self.num_keypoints
        kept = [a for a in self._annotations(image_id) if not a.get("iscrowd", 0) or _num_labeled(a) > 0]
        keypoints = np.asarray([a.get("keypoints") or [0.0] * (3 * k) for a in kept], dtype=np.float64)
        return keypoints.reshape(len(kept), k, 3), np.asarray([_box_size(a) for a in kept], np.float64)

    def keep_mask(self, image_id: int, height: int, width: int) -> np.ndarray:
        """The keep-mask of an image of ``height x width`` px as the official loader warps it: ``(H, W)`` uint8,
        255 = keep, 0 = ignore (crowd regions and the segmentation, else the ``bbox``, of people with no labeled
        keypoint), i.e. the official ``uint8(mask * 255)``; a new array.

        The regions are rasterised (polygons / RLE, ``pycocotools``) on the first call for an image and size in
        each process (each DataLoader worker) only, then kept as row-major run lengths (4 bytes a run: ~1.6 KB for
        the 400 runs of an average coco-mini train image with an ignore region, 4 bytes without one) and expanded
        with ``np.repeat`` (~20 us for 640 x 480 instead of ~1 ms of rasterising).

        Raises:
            ValueError: as :meth:`people` (nothing is cached then: raised on every call).
        """
        key = (image_id, int(height), int(width))
        runs = self._mask_runs.get(key)
        if runs is None:
            ignore = np.zeros((key[1], key[2]), np.uint8)
            for ann in self._annotations(image_id):
                if ann.get("iscrowd", 0) or _num_labeled(ann) == 0:
                    try:
                        ignore |= _region_mask(ann, key[1], key[2])
                    except ValueError as e:
                        raise ValueError(
                            f"annotation file {self.ann_file}: annotation id {ann.get('id')} (image id {image_id}): {e}"
                        ) from e
            runs = self._mask_runs[key] = _keep_runs(ignore)
        return _expand_keep_runs(runs, key[1], key[2])

    def _annotations(self, image_id: int) -> list[dict]:
        return self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, catIds=self.cat_ids, iscrowd=None))

    def ground_truth(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth of one image in the original frame.

        Args:
            image_id: a COCO image id (any image of the json, not only ``image_ids``).

        Returns:
            ``keypoints`` ``(N, K, 3)`` float64 ``(x, y, visibility)`` in original pixels of the kept people, and
            ``mask`` ``(H, W)`` float32, 1 = keep, 0 = ignore. The size comes from the record, else from the file.

        Raises:
            ImageReadError: the record has no size and the image cannot be read.
        """
        info = self.coco.imgs[image_id]
        height, width = info.get("height"), info.get("width")
        if not height or not width:
            height, width = load_image(self.image_path(image_id)).shape[:2]
        keypoints, mask, _ = self.people(image_id, int(height), int(width))
        return keypoints, mask

"""COCO-format keypoint data set (COCO, CrowdPose) with HigherHRNet training targets and augmentation.

Per sample (reference: official HigherHRNet ``CocoKeypoints`` + ``RandomAffineTransform`` +
``RandomHorizontalFlip`` + ``HeatmapGenerator`` / ``JointsGenerator``):

1. load the image (RGB) and the image's person annotations;
2. ignore mask in the original frame: 0 on crowd regions and on the segmentation of people with no labeled
   keypoint, 1 elsewhere;
3. one random affine (see ``bottomup.data.transforms`` for the crop / scale / rotation / flip semantics)
   warps the image to ``S x S`` and, divided by the stride, each mask to ``S/s x S/s`` (pixels outside the image
   become 0 = ignored, as in the official code); the same matrix moves keypoints. The crop side is the image's
   short side (``scale_type="short"``, official default) or its long side (``"long"``: the whole image is in view
   at scale 1, the padding around it masked). The mask is warped as the official code does it
   (``mask_warp="uint8"``: ``uint8(mask * 255)``, bilinear warp, ``/ 255 > 0.5``, so a bilinear value of exactly
   0.5 = 128/255 is kept) or as a float 0/1 map kept where ``> 0.5`` (``"float"``);
4. targets through the data set's codec (``AssociativeEmbeddingCodec.encode``, ``bottomup.codec.targets``): Gaussian
   heatmaps per stride, and tag indices at the first stride. With ``scale_aware_sigma`` each person's Gaussian has
   the official scale-aware sigma ``max(box w, box h) / base_size * base_sigma`` (``int(round(sigma + 0.5))``
   with ``int_sigma``), divided by the augmentation's scale factor, the same at every stride (official
   ``CocoKeypoints.get_joints`` + ``RandomAffineTransform`` + ``ScaleAwareHeatmapGenerator``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from bottomup.codec import AssociativeEmbeddingCodec
from bottomup.codec.targets import select_people
from bottomup.data.io import ImageReadError, load_image
from bottomup.data.keypoints import flip_index_from_pairs
from bottomup.data.transforms import IMAGENET_MEAN, IMAGENET_STD, affine_matrix, scale_matrix, warp_keypoints
from bottomup.data.validate import check_keypoint_annotations

__all__ = ["AugmentParams", "KeypointDataset", "collate", "keypoint_categories", "SCALE_TYPES", "MASK_WARPS"]

#: Values of ``scale_type`` (``data.augmentation.scale_type``, official ``DATASET.SCALE_TYPE``).
SCALE_TYPES = ("short", "long")
#: Values of ``mask_warp`` (``data.augmentation.mask_warp``).
MASK_WARPS = ("uint8", "float")

logger = logging.getLogger(__name__)

_MEAN_255 = (np.asarray(IMAGENET_MEAN, np.float32) * 255.0)[:, None, None]
_INV_STD_255 = (1.0 / (np.asarray(IMAGENET_STD, np.float32) * 255.0))[:, None, None]


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the augmentation (the identity by default = validation mode).

    Attributes:
        rotation: degrees, positive = counter-clockwise on screen.
        scale: multiplier of the reference crop side (``min(H, W)``, or ``max(H, W)`` with ``scale_type="long"``);
            > 1 zooms out. With scale-aware sigma, each person's sigma is divided by it (official).
        translate: ``(dx, dy)`` shift of the crop centre in pixels at the 200-px reference scale: the
            centre moves by ``translate * crop_side / 200`` original pixels (official ``max_translate`` units).
        flip: horizontal flip of the input (``x -> S - 1 - x``) with joints permuted by ``flip_index``.
    """

    rotation: float = 0.0
    scale: float = 1.0
    translate: tuple[float, float] = (0.0, 0.0)
    flip: bool = False


def _region_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """``(H, W)`` uint8 0/1 mask of an annotation's segmentation (polygons, RLE or uncompressed RLE).

    Falls back to the ``bbox`` rectangle when there is no segmentation (CrowdPose records may lack it).
    """
    seg = ann.get("segmentation")
    if not seg:
        bbox = ann.get("bbox")
        if not bbox or len(bbox) != 4:
            return np.zeros((height, width), np.uint8)
        x, y, w, h = (float(v) for v in bbox)
        seg = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    if isinstance(seg, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(seg, height, width)
    else:  # compressed RLE
        rle = seg
    m = mask_utils.decode(rle)
    if m.ndim == 3:
        m = m.max(axis=2)
    return m


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


class KeypointDataset(torch.utils.data.Dataset):
    """COCO-format multi-person keypoint data set yielding HigherHRNet training samples.

    Args:
        ann_file: COCO keypoint json (``data.train_ann``); CrowdPose files without ``area`` / ``segmentation``
            are accepted.
        image_dir: folder of the images named by ``file_name`` (``data.train_images``).
        keypoint_names: K names in channel order (``data.keypoint_names``); K must match the json.
        flip_pairs: ``[left, right]`` name pairs (``data.flip_pairs``).
        input_size: S, side of the square network input in pixels.
        output_strides: one stride per output resolution, e.g. ``(4, 2)`` -> ``S/4`` and ``S/2`` maps.
        sigma: Gaussian std of heatmaps, heatmap pixels (the same at every stride, as official).
        max_people: M, tag rows per image; more people keep the M most complete (logged once).
        train: random augmentation; ``False`` gives the deterministic identity augmentation (centre crop of
            the short side, or whole image with ``scale_type="long"``, at scale 1, no rotation / translation /
            flip) with the same targets.
        max_rotation: degrees, rotation uniform in ``[-max_rotation, max_rotation]``.
        min_scale, max_scale: crop side ``min(H, W) * U(min_scale, max_scale)`` original px (``max(H, W)`` with
            ``scale_type="long"``; > 1 zooms out).
        max_translate: crop-centre shift uniform in ``+-max_translate`` px at the 200-px reference scale,
            i.e. ``+-max_translate * crop_side / 200`` original px (official).
        flip_prob: probability of a horizontal flip.
        max_images: keep only the first this many usable images (debugging, overfitting).
        scale_type: ``"short"`` (official default: the crop's reference side is the image's short side) or
            ``"long"`` (the long side: at scale 1 the whole image is kept, padding masked)
            (``data.augmentation.scale_type``, official ``DATASET.SCALE_TYPE``).
        mask_warp: ``"uint8"`` (official: ``uint8(mask * 255)`` warped, ``/ 255 > 0.5``) or ``"float"`` (the 0/1
            float mask warped, ``> 0.5``; drops pixels at exactly 0.5) (``data.augmentation.mask_warp``).
        scale_aware_sigma: per-person sigma from the box size (``data.scale_aware_sigma``, official
            ``DATASET.SCALE_AWARE_SIGMA``); ``sigma`` is then unused for training targets.
        base_size, base_sigma, int_sigma: scale-aware sigma ``max(box w, box h) / base_size * base_sigma`` heatmap
            px (``int(round(sigma + 0.5))`` with ``int_sigma``), divided by the sample's ``AugmentParams.scale``
            (official ``DATASET.BASE_SIZE``, ``BASE_SIGMA``, ``INT_SIGMA``); ``base_sigma=None``: ``sigma``.
        joint_rounding: heatmap pixel of a joint, ``"trunc"`` (official ``int()``) or ``"floor"``
            (``data.joint_rounding``; ``bottomup.codec.targets.joint_pixels``).
        seed: with an index ``(i, epoch)`` (``bottomup.train.EpochSampler``) the augmentation of sample ``i``
            is drawn from ``numpy.random.default_rng((seed, epoch, i))``: reproducible whatever the number of
            workers, and after a resume. ``None``: 0.

    Kept images: those with at least one annotation of the keypoint category (official
    ``remove_images_without_annotations``), in the json's image order.

    Raises:
        FileNotFoundError: ``ann_file`` or ``image_dir`` does not exist.
        ValueError: the json is not a COCO keypoint file, its K differs from ``len(keypoint_names)`` (or its
            names are the same joints in another order), a keypoint list has the wrong length, no image has
            a person annotation, or no annotation has a labeled keypoint; bad sizes / strides; an unknown
            ``scale_type`` / ``mask_warp`` / ``joint_rounding``; with ``scale_aware_sigma``, a person with labeled
            keypoints and no positive ``bbox`` (the message names the annotation id).
    """

    def __init__(
        self,
        ann_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        keypoint_names: Sequence[str],
        flip_pairs: Sequence[Sequence[str]],
        input_size: int = 512,
        output_strides: Sequence[int] = (4, 2),
        sigma: float = 2.0,
        max_people: int = 30,
        train: bool = True,
        max_rotation: float = 30.0,
        min_scale: float = 0.75,
        max_scale: float = 1.5,
        max_translate: float = 40.0,
        flip_prob: float = 0.5,
        max_images: int | None = None,
        seed: int | None = None,
        scale_type: str = "short",
        mask_warp: str = "uint8",
        scale_aware_sigma: bool = False,
        base_size: float = 256.0,
        base_sigma: float | None = None,
        int_sigma: bool = False,
        joint_rounding: str = "trunc",
    ) -> None:
        ann_file = os.fspath(ann_file)
        image_dir = os.fspath(image_dir)
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
        self.keypoint_names = tuple(keypoint_names)
        self.flip_index = flip_index_from_pairs(self.keypoint_names, flip_pairs)
        self.input_size = int(input_size)
        self.output_strides = tuple(int(s) for s in output_strides)
        if not self.output_strides:
            raise ValueError("output_strides must name at least one stride")
        for s in self.output_strides:
            if s <= 0 or self.input_size % s:
                raise ValueError(f"input_size {self.input_size} must be a positive multiple of every stride {s}")
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        if scale_type not in SCALE_TYPES:
            raise ValueError(
                f"scale_type must be one of {SCALE_TYPES} (data.augmentation.scale_type), got {scale_type!r}"
            )
        if mask_warp not in MASK_WARPS:
            raise ValueError(f"mask_warp must be one of {MASK_WARPS} (data.augmentation.mask_warp), got {mask_warp!r}")
        self.scale_type = scale_type
        self.mask_warp = mask_warp
        self.sigma = float(sigma)
        self.scale_aware_sigma = bool(scale_aware_sigma)
        self.base_size = float(base_size)
        self.base_sigma = self.sigma if base_sigma is None else float(base_sigma)
        self.int_sigma = bool(int_sigma)
        if self.scale_aware_sigma and not (self.base_size > 0 and self.base_sigma > 0):
            raise ValueError(
                f"scale-aware sigma needs data.base_size > 0 and data.base_sigma > 0, got {base_size}, {base_sigma}"
            )
        self.max_people = int(max_people)
        #: encodes the targets (heatmaps per stride, tag indices); owns sigma, strides and max_people
        self.codec = AssociativeEmbeddingCodec(
            len(self.keypoint_names),
            flip_index=self.flip_index,
            sigma=self.sigma,
            strides=self.output_strides,
            max_people=self.max_people,
            joint_rounding=joint_rounding,
        )
        self.train = bool(train)
        self.seed = seed
        self.max_rotation = float(max_rotation)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.max_translate = float(max_translate)
        self.flip_prob = float(flip_prob)
        self.ann_file = ann_file
        self.image_dir = image_dir

        self.coco, self.cat_ids, json_names = _load_coco(ann_file)
        k = len(self.keypoint_names)
        if len(json_names) != k:
            raise ValueError(
                f"annotation file {ann_file} has {len(json_names)} keypoints per person ({json_names}) but the "
                f"data config has {k} (data.num_keypoints / data.keypoint_names): use the data config of this "
                "data set (e.g. data=crowdpose for CrowdPose)"
            )
        if json_names != list(self.keypoint_names):
            if sorted(json_names) == sorted(self.keypoint_names):
                raise ValueError(
                    f"annotation file {ann_file} lists the keypoints in the order {json_names}, but "
                    f"data.keypoint_names is {list(self.keypoint_names)}; they must be in the same order"
                )
            logger.warning(
                "keypoint names of %s (%s) differ from data.keypoint_names (%s); assuming the same order",
                ann_file,
                json_names,
                list(self.keypoint_names),
            )
        labeled = 0
        for ann in self.coco.loadAnns(self.coco.getAnnIds(catIds=self.cat_ids)):
            kps = ann.get("keypoints")
            if kps is not None and len(kps) not in (0, 3 * k):
                raise ValueError(
                    f"annotation file {ann_file}: annotation id {ann.get('id')} has {len(kps)} keypoint "
                    f"values, expected 3 * {k} (data.num_keypoints)"
                )
            n_labeled = self._num_labeled(ann)
            labeled += n_labeled > 0
            if self.scale_aware_sigma and n_labeled > 0 and not self._box_size(ann) > 0:
                raise ValueError(
                    f"annotation file {ann_file}: annotation id {ann.get('id')} has labeled keypoints but no positive "
                    f"bbox (got {ann.get('bbox')!r}), which data.scale_aware_sigma=true needs for its sigma; fix the "
                    "bbox or set data.scale_aware_sigma=false"
                )
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
        if max_images is not None:
            ids = ids[: int(max_images)]
        self.image_ids: list[int] = ids
        self._warned_max_people = False

    # ------------------------------------------------------------------ metadata
    @property
    def num_keypoints(self) -> int:
        """K."""
        return len(self.keypoint_names)

    @property
    def output_sizes(self) -> tuple[int, ...]:
        """Heatmap side ``S / s`` per stride."""
        return tuple(self.input_size // s for s in self.output_strides)

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> str:
        """Path of an image file."""
        return os.path.join(self.image_dir, self.coco.imgs[image_id]["file_name"])

    @staticmethod
    def _num_labeled(ann: dict) -> int:
        if "num_keypoints" in ann:
            return int(ann["num_keypoints"])
        kps = ann.get("keypoints") or []
        return int(np.count_nonzero(np.asarray(kps, dtype=np.float64)[2::3] > 0))

    @staticmethod
    def _box_size(ann: dict) -> float:
        """``max(w, h)`` of the annotation's ``bbox`` in original px (official scale-aware sigma); 0 without one."""
        box = ann.get("bbox")
        if not box or len(box) != 4:
            return 0.0
        return float(max(box[2], box[3]))

    # ------------------------------------------------------------------ annotations
    def _raw(self, image_id: int) -> list[dict]:
        return self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, catIds=self.cat_ids, iscrowd=None))

    def _people(self, anns: list[dict], height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keypoints ``(N, K, 3)``, mask ``(H, W)`` and box sizes ``(N,)`` of the kept people."""
        k = self.num_keypoints
        ignore = np.zeros((height, width), np.uint8)
        people, sizes = [], []
        for ann in anns:
            crowd = bool(ann.get("iscrowd", 0))
            n_labeled = self._num_labeled(ann)
            if crowd or n_labeled == 0:
                ignore |= _region_mask(ann, height, width)
            if not crowd or n_labeled > 0:
                kps = ann.get("keypoints") or [0.0] * (3 * k)
                people.append(np.asarray(kps, dtype=np.float64).reshape(k, 3))
                sizes.append(self._box_size(ann))
        keypoints = np.stack(people) if people else np.zeros((0, k, 3))
        return keypoints, (ignore == 0).astype(np.float32), np.asarray(sizes, np.float64)

    def _keypoints_and_mask(self, anns: list[dict], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        keypoints, mask, _ = self._people(anns, height, width)
        return keypoints, mask

    def person_sigmas(self, box_sizes: np.ndarray) -> np.ndarray:
        """Scale-aware sigma at augmentation scale 1 (official ``CocoKeypoints.get_joints``).

        Args:
            box_sizes: ``(N,)`` ``max(bbox w, bbox h)`` in original px.

        Returns:
            ``(N,)`` float64 heatmap px: ``size / base_size * base_sigma``, or ``int(round(that + 0.5))`` with
            ``int_sigma``. People without a box (only those with no labeled joint, which paint nothing) get
            ``base_sigma``.
        """
        sizes = np.asarray(box_sizes, np.float64)
        sigmas = sizes / self.base_size * self.base_sigma
        if self.int_sigma:
            sigmas = np.array([float(int(np.round(s + 0.5))) for s in sigmas], np.float64)
        return np.where(sigmas > 0, sigmas, self.base_sigma)

    def annotations(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth of one image in the original frame.

        Args:
            image_id: a COCO image id (any image of the json, not only ``image_ids``).

        Returns:
            ``keypoints`` ``(N, K, 3)`` float64 ``(x, y, visibility)`` in original pixels for the people that
            are non-crowd or have labeled keypoints (official filter), and ``mask`` ``(H, W)`` float32,
            1 = keep, 0 = ignore (crowd regions, segmentation of people without labeled keypoints).
        """
        info = self.coco.imgs[image_id]
        height, width = info.get("height"), info.get("width")
        if not height or not width:
            height, width = load_image(self.image_path(image_id)).shape[:2]
        return self._keypoints_and_mask(self._raw(image_id), int(height), int(width))

    # ------------------------------------------------------------------ augmentation
    def random_params(self, rng: np.random.Generator) -> AugmentParams:
        """Draw one augmentation (official HigherHRNet distributions)."""
        return AugmentParams(
            rotation=float(rng.uniform(-self.max_rotation, self.max_rotation)),
            scale=float(rng.uniform(self.min_scale, self.max_scale)),
            translate=(
                float(rng.uniform(-self.max_translate, self.max_translate)),
                float(rng.uniform(-self.max_translate, self.max_translate)),
            ),
            flip=bool(rng.random() < self.flip_prob),
        )

    def matrix(self, height: int, width: int, params: AugmentParams) -> np.ndarray:
        """``(2, 3)`` original -> input affine for an image of ``height x width`` and ``params``.

        The crop side is ``min(H, W) * params.scale`` original px (``max(H, W)`` with ``scale_type="long"``),
        centred at ``(W / 2, H / 2) + params.translate * crop_side / 200`` (official HigherHRNet ``SCALE_TYPE``).
        """
        side = max(height, width) if self.scale_type == "long" else min(height, width)
        crop = side * params.scale
        shift = crop / 200.0
        center = (width / 2.0 + params.translate[0] * shift, height / 2.0 + params.translate[1] * shift)
        return affine_matrix(center, crop, params.rotation, self.input_size, flip=params.flip)

    # ------------------------------------------------------------------ samples
    def sample(self, index: int, params: AugmentParams | None = None) -> dict[str, Any]:
        """One training sample with explicit augmentation (``None`` = identity).

        Returns:
            dict with
            ``image`` ``(3, S, S)`` float32, RGB, ImageNet-normalised;
            ``heatmaps`` list (one per stride) of ``(K, S/s, S/s)`` float32 in [0, 1];
            ``masks`` list of ``(S/s, S/s)`` float32, 1 = keep, 0 = ignore (also outside the image);
            ``tag_indices`` ``(M, K, 2)`` int64 at the first stride (``bottomup.codec.targets.tag_indices``);
            ``image_id`` int; ``num_people`` int, people with at least one joint in the first map (<= M);
            ``matrix`` ``(2, 3)`` float64 tensor, original -> input pixels (flip included);
            ``flipped`` bool (joint channels are then permuted by ``flip_index``).

        Raises:
            ImageReadError: the image cannot be read (``__getitem__`` turns this into ``None``).
        """
        params = params or AugmentParams()
        image_id = self.image_ids[index]
        path = self.image_path(image_id)
        image = load_image(path)
        height, width = image.shape[:2]
        info = self.coco.imgs[image_id]
        if info.get("height") and info.get("width") and (int(info["height"]), int(info["width"])) != (height, width):
            raise ImageReadError(
                path,
                f"it is {width}x{height} px but {self.ann_file} says {info['width']}x{info['height']}: its "
                "annotations are not in this image's frame",
            )
        keypoints, mask, box_sizes = self._people(self._raw(image_id), height, width)
        if keypoints.shape[0] > self.max_people and not self._warned_max_people:
            self._warned_max_people = True
            logger.info(
                "image %s has %d people, more than max_people=%d: keeping the %d most complete "
                "(logged once per worker)",
                image_id,
                keypoints.shape[0],
                self.max_people,
                self.max_people,
            )
        keep = select_people(keypoints, self.max_people)
        keypoints = keypoints[keep]
        sigmas = self.person_sigmas(box_sizes[keep]) / params.scale if self.scale_aware_sigma else None
        if params.flip:
            keypoints = keypoints[:, self.flip_index]

        m = self.matrix(height, width, params)
        size = self.input_size
        warped = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        kp_input = warp_keypoints(keypoints, m)

        # heatmaps per stride, tag indices at the first stride
        targets = self.codec.encode(kp_input, size, sigmas=sigmas)
        masks = [
            torch.from_numpy(self.warp_mask(mask, scale_matrix(m, s), out))
            for s, out in zip(self.output_strides, self.output_sizes, strict=True)
        ]
        heatmaps = [torch.from_numpy(h) for h in targets["heatmaps"]]
        tags = targets["tag_indices"]

        # transpose the uint8 image first, then normalise in place (5x faster than on the HWC float copy)
        normed = np.ascontiguousarray(warped.transpose(2, 0, 1)).astype(np.float32)
        normed -= _MEAN_255
        normed *= _INV_STD_255
        return {
            "image": torch.from_numpy(normed),
            "heatmaps": heatmaps,
            "masks": masks,
            "tag_indices": torch.from_numpy(tags),
            "image_id": int(image_id),
            "num_people": int(tags[:, :, 1].any(axis=1).sum()),
            "matrix": torch.from_numpy(m),
            "flipped": bool(params.flip),
        }

    def warp_mask(self, mask: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
        """Warp a keep-mask to a ``size x size`` output and binarise it (``mask_warp``; outside the image: 0).

        Args:
            mask: ``(H, W)`` float32 0/1 in original px (1 = keep).
            matrix: ``(2, 3)`` original -> output px.
            size: output side.

        Returns:
            ``(size, size)`` float32 0/1.
        """
        if self.mask_warp == "uint8":  # official: uint8(mask * 255), bilinear, / 255 > 0.5 (128 / 255 is kept)
            src = (mask * 255).astype(np.uint8)
            warped = cv2.warpAffine(src, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0) / 255.0
        else:
            warped = cv2.warpAffine(mask, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
        return (warped > 0.5).astype(np.float32)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any] | None:
        """A random-augmented (train) or identity (val) sample; ``None`` if the image cannot be read.

        ``index`` is an int, or ``(i, epoch)``. For an int the random state comes from torch's generator
        (seeded per DataLoader worker, and by ``torch.manual_seed`` in the main process); for ``(i, epoch)``
        it is ``(seed, epoch, i)``, independent of workers, so a resumed run draws the same augmentation.
        """
        epoch = None
        if isinstance(index, tuple | list):
            index, epoch = int(index[0]), int(index[1])
        params = None
        if self.train:
            if epoch is None:
                rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            else:
                rng = np.random.default_rng((self.seed or 0, epoch, index))
            params = self.random_params(rng)
        try:
            return self.sample(index, params)
        except ImageReadError as e:
            logger.warning("skipping image %s: %s", self.image_ids[index], e)
            return None


def _stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack`` of CPU tensors via numpy (an order of magnitude faster than torch's CPU copy here).

    In a DataLoader worker the result is allocated in shared memory (as ``default_collate`` does), so
    sending the batch to the main process needs no further copy.
    """
    first = tensors[0]
    shape = (len(tensors), *first.shape)
    if torch.utils.data.get_worker_info() is not None:
        storage = first.untyped_storage()._new_shared(first.element_size() * int(np.prod(shape)))
        out = torch.empty(0, dtype=first.dtype).set_(storage).view(shape)
    else:
        out = torch.empty(shape, dtype=first.dtype)
    np.stack([t.numpy() for t in tensors], out=out.numpy())
    return out


def collate(batch: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Batch samples of ``KeypointDataset``, dropping unreadable ones (``None``).

    Returns:
        ``None`` when every sample is ``None``; otherwise a dict with ``image`` ``(B, 3, S, S)``,
        ``heatmaps`` list of ``(B, K, S/s, S/s)``, ``masks`` list of ``(B, S/s, S/s)``, ``tag_indices``
        ``(B, M, K, 2)``, ``image_id`` / ``num_people`` int64 ``(B,)``, ``matrix`` ``(B, 2, 3)``, ``flipped``
        bool ``(B,)`` and ``num_skipped`` (int, the dropped samples).
    """
    kept = [b for b in batch if b is not None]
    if not kept:
        return None
    out: dict[str, Any] = {
        "image": _stack([b["image"] for b in kept]),
        "heatmaps": [_stack(maps) for maps in zip(*(b["heatmaps"] for b in kept), strict=True)],
        "masks": [_stack(maps) for maps in zip(*(b["masks"] for b in kept), strict=True)],
        "tag_indices": _stack([b["tag_indices"] for b in kept]),
        "image_id": torch.tensor([b["image_id"] for b in kept], dtype=torch.int64),
        "num_people": torch.tensor([b["num_people"] for b in kept], dtype=torch.int64),
        "num_skipped": len(batch) - len(kept),
    }
    if all("matrix" in b for b in kept):
        out["matrix"] = _stack([b["matrix"] for b in kept])
        out["flipped"] = torch.tensor([bool(b["flipped"]) for b in kept])
    return out

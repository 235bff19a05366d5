"""COCO-format keypoint data set (COCO, CrowdPose) yielding HigherHRNet training samples.

:class:`KeypointDataset` composes three objects, each with its own settings (``bottomup.data.settings``) and built
from the config by ``bottomup.build.build_train_dataset``:

1. the annotations (:class:`~bottomup.data.annotations.CocoKeypointAnnotations`): the image (RGB), its kept people
   and the ignore mask in the original frame (0 on crowd regions and on the segmentation of people with no labeled
   keypoint, 1 elsewhere);
2. the augmentation (:class:`~bottomup.data.augmentation.Augmentation`): one random affine (crop / scale / rotation
   / flip, ``bottomup.data.transforms``) warps the image to ``S x S``, the mask to ``S/s x S/s`` per stride and
   the keypoints, its parameters drawn from ``(seed, epoch, index)``;
3. the targets (:class:`~bottomup.data.encoding.TargetEncoder`): Gaussian heatmaps per stride and tag indices at
   the first stride (``AssociativeEmbeddingCodec.encode``), with the optional scale-aware sigma.

Samples and batches are :class:`~bottomup.data.batch.Sample` / :class:`~bottomup.data.batch.Batch`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch

from bottomup.codec import AssociativeEmbeddingCodec
from bottomup.codec.targets import select_people
from bottomup.core.keypoints import flip_index_from_pairs
from bottomup.data.annotations import CocoKeypointAnnotations
from bottomup.data.augmentation import Augmentation, AugmentParams
from bottomup.data.batch import Sample, collate
from bottomup.data.encoding import TargetEncoder
from bottomup.data.io import ImageReadError
from bottomup.data.settings import AnnotationSettings, AugmentationSettings, TargetSettings
from bottomup.data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["AugmentParams", "KeypointDataset", "collate"]

logger = logging.getLogger(__name__)

_MEAN_255 = (np.asarray(IMAGENET_MEAN, np.float32) * 255.0)[:, None, None]
_INV_STD_255 = (1.0 / (np.asarray(IMAGENET_STD, np.float32) * 255.0))[:, None, None]
#: ``(3, 256)`` float32: channel c's normalised value of each uint8 level, ``(float32(v) - mean_c) * inv_std_c``,
#: computed in float32 exactly as the element-wise ``(image - mean) * inv_std`` it replaces
_NORMALISE_LUT = (np.arange(256, dtype=np.float32)[None, :] - _MEAN_255[:, :, 0]) * _INV_STD_255[:, :, 0]


def _normalise(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 ImageNet-normalised.

    One table look-up per pixel (``cv2.LUT`` of each channel plane into its output plane): the values of
    ``(float32(image) - _MEAN_255) * _INV_STD_255`` in float32 bit for bit, with one pass over the float output
    instead of a transposed copy, a conversion and two arithmetic passes.
    """
    out = np.empty((3,) + image.shape[:2], np.float32)
    for c, plane in enumerate(cv2.split(image)):
        written = cv2.LUT(plane, _NORMALISE_LUT[c], dst=out[c])
        if not np.may_share_memory(written, out[c]):  # (should OpenCV ever allocate instead)
            out[c] = written
    return torch.from_numpy(out)


class KeypointDataset(torch.utils.data.Dataset):
    """Multi-person keypoint data set yielding HigherHRNet training samples (:class:`~bottomup.data.batch.Sample`).

    Args:
        source: the annotation file and its images; its kept images are the samples.
        augmentation: draws and applies the random affine (its input size and strides must be the targets').
        targets: encodes the targets.
        train: random augmentation; ``False`` gives the deterministic identity augmentation (centre crop of
            the short side, or whole image with ``scale_type="long"``, at scale 1, no rotation / translation /
            flip) with the same targets.
        seed: with an index ``(i, epoch)`` (``bottomup.engine.trainer.EpochSampler``) the augmentation of sample
            ``i`` is ``augmentation.draw(seed, epoch, i)``: reproducible whatever the number of workers, and after
            a resume. ``None``: 0.

    Raises:
        ValueError: the three parts disagree on K, the input size or the strides.
    """

    def __init__(
        self,
        source: CocoKeypointAnnotations,
        augmentation: Augmentation,
        targets: TargetEncoder,
        train: bool = True,
        seed: int | None = None,
    ) -> None:
        if source.num_keypoints != targets.codec.num_keypoints:
            raise ValueError(f"annotations have K={source.num_keypoints}, targets {targets.codec.num_keypoints}")
        if (augmentation.input_size, augmentation.output_strides) != (targets.input_size, targets.output_strides):
            raise ValueError(
                f"augmentation (input {augmentation.input_size}, strides {augmentation.output_strides}) and targets "
                f"(input {targets.input_size}, strides {targets.output_strides}) must agree"
            )
        self.source = source
        self.augmentation = augmentation
        self.targets = targets
        self.train = bool(train)
        self.seed = seed
        self._warned_max_people = False

    @classmethod
    def from_files(
        cls,
        ann_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        keypoint_names: Sequence[str],
        flip_pairs: Sequence[Sequence[str]],
        output_strides: Sequence[int] = (4, 2),
        *,
        train: bool = True,
        seed: int | None = None,
        annotations: AnnotationSettings = AnnotationSettings(),  # noqa: B008 - frozen, shared safely
        augmentation: AugmentationSettings = AugmentationSettings(),  # noqa: B008
        targets: TargetSettings = TargetSettings(),  # noqa: B008
    ) -> KeypointDataset:
        """The data set of an annotation file and image folder, without a config (tests, notebooks): the
        composition ``bottomup.build.build_train_dataset`` makes from ``conf/data/*.yaml``.

        Args:
            ann_file, image_dir: as :class:`~bottomup.data.annotations.CocoKeypointAnnotations`.
            keypoint_names: K names in channel order. flip_pairs: ``[left, right]`` name pairs.
            output_strides: one stride per output resolution (``model.strides``).
            train, seed: as the constructor.
            annotations, augmentation, targets: the settings of the three parts.

        Raises:
            FileNotFoundError, ValueError: as the three parts.
        """
        flip_index = flip_index_from_pairs(keypoint_names, flip_pairs)
        encoder = TargetEncoder(targets, len(keypoint_names), output_strides, flip_index)
        augment = Augmentation(augmentation, targets.input_size, output_strides, flip_index, udp=targets.udp)
        source = CocoKeypointAnnotations(
            ann_file, image_dir, keypoint_names, annotations, require_boxes=targets.scale_aware_sigma
        )
        return cls(source, augment, encoder, train=train, seed=seed)

    # ------------------------------------------------------------------ metadata
    @property
    def keypoint_names(self) -> tuple[str, ...]:
        """The K names, in channel order."""
        return self.source.keypoint_names

    @property
    def num_keypoints(self) -> int:
        """K."""
        return self.source.num_keypoints

    @property
    def flip_index(self) -> list[int]:
        """K ints: the joint each joint becomes under a horizontal flip."""
        return self.augmentation.flip_index

    @property
    def codec(self) -> AssociativeEmbeddingCodec:
        """The codec that encodes the targets (sigma, strides, max_people, joint rounding)."""
        return self.targets.codec

    @property
    def input_size(self) -> int:
        """S, side of the square network input in pixels."""
        return self.targets.input_size

    @property
    def output_strides(self) -> tuple[int, ...]:
        """One stride per output resolution."""
        return self.targets.output_strides

    @property
    def output_sizes(self) -> tuple[int, ...]:
        """Heatmap side ``S / s`` per stride."""
        return self.targets.output_sizes

    @property
    def max_people(self) -> int:
        """M, tag rows per sample."""
        return self.targets.settings.max_people

    @property
    def image_ids(self) -> list[int]:
        """COCO ids of the samples' images, in sample order."""
        return self.source.image_ids

    @property
    def coco(self) -> Any:
        """The ``pycocotools.coco.COCO`` index of the annotation file."""
        return self.source.coco

    def __len__(self) -> int:
        return len(self.source)

    def image_path(self, image_id: int) -> str:
        """Path of an image file."""
        return self.source.image_path(image_id)

    def annotations(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth ``(keypoints (N, K, 3), mask (H, W))`` of one image in the original frame
        (``CocoKeypointAnnotations.ground_truth``)."""
        return self.source.ground_truth(image_id)

    # ------------------------------------------------------------------ samples
    def sample(self, index: int, params: AugmentParams | None = None) -> Sample:
        """One training sample with explicit augmentation (``None`` = identity).

        An image with more than M people keeps the M most complete (``select_people``; logged once per worker).

        Raises:
            ImageReadError: the image cannot be read, or its size is not its record's (``__getitem__`` turns this
                into ``None``).
        """
        params = params or AugmentParams()
        image_id = self.image_ids[index]
        image = self.source.read_image(image_id)
        height, width = image.shape[:2]
        keypoints, box_sizes = self.source.people_keypoints(image_id)
        mask = self.source.keep_mask(image_id, height, width)  # uint8 0/255, rasterised once per image and worker
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
        view = self.augmentation.apply(image, keypoints[keep], mask, params)
        heatmaps, tags = self.targets.encode(view.keypoints, box_sizes[keep], params.scale)
        return Sample(
            image=_normalise(view.image),
            heatmaps=[torch.from_numpy(h) for h in heatmaps],
            masks=[torch.from_numpy(m) for m in view.masks],
            tag_indices=torch.from_numpy(tags),
            image_id=int(image_id),
            num_people=int(tags[:, :, 1].any(axis=1).sum()),
            matrix=torch.from_numpy(view.matrix),
            flipped=bool(params.flip),
        )

    def __getitem__(self, index: int | tuple[int, int]) -> Sample | None:
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
                params = self.augmentation.random_params(rng)
            else:
                params = self.augmentation.draw(self.seed or 0, epoch, index)
        try:
            return self.sample(index, params)
        except ImageReadError as e:
            logger.warning("skipping image %s: %s", self.image_ids[index], e)
            return None

"""The training sample and batch: their keys and shapes, declared once, and :func:`collate`.

:class:`Sample` (``KeypointDataset.sample``), :class:`Batch` (:func:`collate`) and :class:`TrainingInputs` (the
part the trainer moves to the device and the loss reads) are ``TypedDict`` s: plain dicts at run time (the
DataLoader pins and moves them as dicts, callers index them by key), whose keys a type checker verifies.

Letters: B batch, K keypoints, M = ``max_people``, S input side, s output stride.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import torch

__all__ = ["TrainingInputs", "Sample", "Batch", "collate"]


class TrainingInputs(TypedDict):
    """What a training step reads: the network input and the loss targets (one sample, or ``B`` stacked first).

    Keys:
        image: ``(3, S, S)`` float32, RGB, ImageNet-normalised.
        heatmaps: one ``(K, S/s, S/s)`` float32 in [0, 1] per stride.
        masks: one ``(S/s, S/s)`` float32 per stride, 1 = keep, 0 = ignore (also outside the image).
        tag_indices: ``(M, K, 2)`` int64 at the first stride (``bottomup.codec.targets.tag_indices``).
    """

    image: torch.Tensor
    heatmaps: list[torch.Tensor]
    masks: list[torch.Tensor]
    tag_indices: torch.Tensor


class Sample(TrainingInputs):
    """One training sample (``KeypointDataset.sample``): :class:`TrainingInputs` and where it came from.

    Keys:
        image_id: the COCO image id.
        num_people: people with at least one joint in the first map (<= M).
        matrix: ``(2, 3)`` float64 original -> input px (flip included).
        flipped: whether the sample is flipped (joint channels then permuted by ``flip_index``).
    """

    image_id: int
    num_people: int
    matrix: torch.Tensor
    flipped: bool


class _BatchBase(TrainingInputs):
    image_id: torch.Tensor
    num_people: torch.Tensor
    num_skipped: int


class Batch(_BatchBase, total=False):
    """Samples stacked by :func:`collate`: :class:`TrainingInputs` with ``B`` first, and

    Keys:
        image_id, num_people: int64 ``(B,)``.
        num_skipped: the unreadable samples (``None``) dropped from the batch.
        matrix: ``(B, 2, 3)`` float64; flipped: bool ``(B,)``; both only when every sample has them.
    """

    matrix: torch.Tensor
    flipped: torch.Tensor


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


def collate(batch: list[Sample | None]) -> Batch | None:
    """Batch samples of ``KeypointDataset``, dropping unreadable ones (``None``).

    Returns:
        ``None`` when every sample is ``None``; otherwise a :class:`Batch`.
    """
    kept = [b for b in batch if b is not None]
    if not kept:
        return None
    out = Batch(
        image=_stack([b["image"] for b in kept]),
        heatmaps=[_stack(maps) for maps in zip(*(b["heatmaps"] for b in kept), strict=True)],
        masks=[_stack(maps) for maps in zip(*(b["masks"] for b in kept), strict=True)],
        tag_indices=_stack([b["tag_indices"] for b in kept]),
        image_id=torch.tensor([b["image_id"] for b in kept], dtype=torch.int64),
        num_people=torch.tensor([b["num_people"] for b in kept], dtype=torch.int64),
        num_skipped=len(batch) - len(kept),
    )
    if all("matrix" in b for b in kept):
        out["matrix"] = _stack([b["matrix"] for b in kept])
        out["flipped"] = torch.tensor([bool(b["flipped"]) for b in kept])
    return out

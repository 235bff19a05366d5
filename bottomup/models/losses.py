"""Losses of HigherHRNet / associative embedding: masked heatmap MSE per resolution + AE pull/push.

Letters: B images, K keypoints, H x W map of one output resolution, M max people per image, L tag dim.

Reference: Newell et al. 2017, "Associative Embedding" (Sec. 3, grouping loss); Cheng et al. 2020,
"HigherHRNet" (Sec. 3.3, multi-resolution supervision), and the official HigherHRNet recipe whose
numbers this reproduces:

* heatmap loss per image = mean over K*H*W of ``mask * (pred - target)^2``, averaged over the batch;
* for the n people with at least one tagged joint, with m_p the mean tag of person p:
  pull = mean over people of the mean squared deviation of their tags from m_p;
  push = 1/2 * sum_{p != q} f(m_p - m_q) / (n (n - 1)), f(d) = exp(-|d|^2) (``exp``) or max(0, 1 - |d|)
  (``max``); n = 0 gives 0 for both, n = 1 gives push 0. Both averaged over the batch.

SWAHR (Luo et al. 2021, "Rethinking the Heatmap Regression for Bottom-up Human Pose Estimation", Sec. 3.2-3.4;
official ``greatlog/SWAHR-HumanPose`` ``lib/core/loss.py``), ``AssociativeEmbeddingLoss(swahr=True)``: each output
starts with K predicted scale maps ``s`` (then the K heatmaps, then the tags of the first output). With ``g`` the
Gaussian target and ``s`` kept only where ``g > 0``:

* scale-adaptive target: ``h = g + g ln(g) s + 1/2 g ln(g)^2 s^2`` (second-order expansion of ``g^(1 + s)``,
  i.e. a Gaussian of std ``sigma / sqrt(1 + s)``; ``ln`` taken as 0 where ``g = 0``);
* weight-adaptive heatmap loss per image: mean over K*H*W of ``mask * (p - h)^2 * w`` with
  ``w = |1 - p| g^0.01 + |p| (1 - g^0.01)`` (``p`` the predicted heatmap; gradients flow through ``w`` and ``h``);
* scale regulariser per image: mean over K*H*W of ``mask * s^2``, added unweighted by the official code
  (``scale_weight`` = 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["heatmap_loss", "swahr_heatmap_loss", "scale_loss", "ae_loss", "AssociativeEmbeddingLoss"]


def heatmap_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Masked mean-squared error per image.

    Args:
        pred: ``(B, K, H, W)`` predicted heatmaps.
        target: ``(B, K, H, W)`` targets in [0, 1].
        mask: ``(B, H, W)`` loss weights (0 = ignore: crowd / unlabeled people).

    Returns:
        ``(B,)`` float32: mean over K*H*W of ``mask * (pred - target)^2``.
    """
    diff = (pred.float() - target.float()) ** 2 * mask.float()[:, None]
    return diff.mean(dim=(1, 2, 3))


def swahr_heatmap_loss(pred: Tensor, target: Tensor, mask: Tensor, scale: Tensor) -> Tensor:
    """SWAHR weight-adaptive loss against the scale-adaptive target, per image (official ``HeatmapLoss``).

    Args:
        pred: ``(B, K, H, W)`` predicted heatmaps.
        target: ``(B, K, H, W)`` Gaussian targets ``g`` in [0, 1].
        mask: ``(B, H, W)`` loss weights (0 = ignore).
        scale: ``(B, K, H, W)`` predicted scale maps, already zero where ``target == 0``.

    Returns:
        ``(B,)`` float32: mean over K*H*W of ``mask * (pred - h)^2 * w``, with the scale-adaptive target
        ``h = g + g ln(g) s + g ln(g)^2 s^2 / 2`` and the weight ``w = |1 - pred| g^0.01 + |pred| (1 - g^0.01)``
        (module docstring).
    """
    p, g, s = pred.float(), target.float(), scale.float()
    log_g = torch.log(torch.where(g > 0, g, g + 1))  # ln(g); 0 where g == 0 (official: log(g + 1) there)
    scaled = g + g * log_g * s + 0.5 * g * log_g**2 * s**2
    g_pow = g**0.01
    weight = (1 - p).abs() * g_pow + p.abs() * (1 - g_pow)
    return ((p - scaled) ** 2 * weight * mask.float()[:, None]).mean(dim=(1, 2, 3))


def scale_loss(scale: Tensor, mask: Tensor) -> Tensor:
    """SWAHR scale regulariser per image (official ``ScaleLoss``).

    Args:
        scale: ``(B, K, H, W)`` predicted scale maps, already zero where the target is 0.
        mask: ``(B, H, W)`` loss weights.

    Returns:
        ``(B,)`` float32: mean over K*H*W of ``mask * scale^2``.
    """
    return (scale.float() ** 2 * mask.float()[:, None]).mean(dim=(1, 2, 3))


def ae_loss(tags: Tensor, tag_indices: Tensor, push_type: str = "exp") -> tuple[Tensor, Tensor]:
    """Associative-embedding pull and push losses per image, vectorised over images and people.

    Args:
        tags: ``(B, K * L, H, W)`` tag maps (channel ``k * L + l``; L = 1 for the official models).
        tag_indices: ``(B, M, K, 2)`` int64 ``[k * H * W + y * W + x, valid]`` (``bottomup.codec.targets.tag_indices``).
        push_type: ``"exp"`` or ``"max"``.

    Returns:
        ``(pull, push)``, each ``(B,)`` float32, on the device of ``tags``.

    Raises:
        ValueError: unknown ``push_type`` or a channel count that is not a multiple of K.
    """
    if push_type not in ("exp", "max"):
        raise ValueError(f"loss.push_type must be 'exp' or 'max', got {push_type!r}")
    b, m, k, _ = tag_indices.shape
    c, h, w = tags.shape[1:]
    if c % k:
        raise ValueError(f"tag maps have {c} channels, not a multiple of num_keypoints={k}")
    dim = c // k
    # (B, K, L, H*W) -> gather each joint's tag at its pixel: index (B, M, K) -> values (B, M, K, L)
    flat = tags.float().reshape(b, k, dim, h * w).permute(0, 1, 3, 2).reshape(b, k * h * w, dim)
    idx = tag_indices[..., 0].clamp(0, k * h * w - 1).reshape(b, m * k, 1).expand(-1, -1, dim)
    values = flat.gather(1, idx).reshape(b, m, k, dim)
    valid = tag_indices[..., 1].to(values.dtype)  # (B, M, K)
    count = valid.sum(dim=2)  # (B, M) tagged joints per person
    person = count > 0  # (B, M)
    n = person.sum(dim=1).to(values.dtype)  # (B,)
    mean = (values * valid[..., None]).sum(dim=2) / count.clamp(min=1)[..., None]  # (B, M, L)
    sq = ((values - mean[:, :, None]) ** 2).sum(dim=-1) * valid  # (B, M, K)
    pull_person = sq.sum(dim=2) / count.clamp(min=1)  # (B, M)
    pull = pull_person.sum(dim=1) / n.clamp(min=1)
    diff = mean[:, :, None] - mean[:, None, :]  # (B, M, M, L)
    if push_type == "exp":
        f = torch.exp(-(diff**2).sum(dim=-1))
    else:
        f = torch.clamp(1 - diff.norm(dim=-1), min=0)
    pair = person[:, :, None] & person[:, None, :]
    pair = pair & ~torch.eye(m, dtype=torch.bool, device=tags.device)
    push = 0.5 * (f * pair).sum(dim=(1, 2)) / (n * (n - 1)).clamp(min=1)
    return pull, push


class AssociativeEmbeddingLoss(nn.Module):
    """Multi-resolution heatmap loss + AE loss on the first (1/4) output.

    Args:
        num_keypoints: K.
        heatmap_weights: one weight per output resolution (``[1.0, 1.0]`` for HigherHRNet).
        pull_weight, push_weight: AE loss weights (official 1e-3 each).
        push_type: ``"exp"`` or ``"max"``.
        swahr: the outputs carry SWAHR scale maps (``HigherHRNet(swahr=True)``): the heatmap loss becomes
            :func:`swahr_heatmap_loss` and :func:`scale_loss` is added per resolution (module docstring).
        scale_weight: weight of the scale regulariser (official 1.0); read only with ``swahr``.

    ``forward(outputs, heatmaps, masks, tag_indices)`` takes

    * ``outputs``: list of model outputs, ``(B, K + K*L, H0, W0)`` first, then ``(B, K, Hi, Wi)`` (with ``swahr``:
      K scale maps in front of each, ``(B, 2K + K*L, H0, W0)`` then ``(B, 2K, Hi, Wi)``);
    * ``heatmaps``: list of ``(B, K, Hi, Wi)`` targets; ``masks``: list of ``(B, Hi, Wi)``;
    * ``tag_indices``: ``(B, M, K, 2)`` at the first resolution,

    and returns a dict of scalar tensors on the outputs' device: ``loss`` (weighted total),
    ``heatmap/{i}``, ``pull``, ``push`` (unweighted batch means), and with ``swahr`` ``scale/{i}``.

    Raises:
        ValueError: the number of outputs, targets and weights disagree, or a channel count does not
            match K (a model built for another data set).
    """

    def __init__(
        self,
        num_keypoints: int,
        heatmap_weights: Sequence[float] = (1.0, 1.0),
        pull_weight: float = 1e-3,
        push_weight: float = 1e-3,
        push_type: str = "exp",
        swahr: bool = False,
        scale_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if push_type not in ("exp", "max"):
            raise ValueError(f"loss.push_type must be 'exp' or 'max', got {push_type!r}")
        self.num_keypoints = num_keypoints
        self.heatmap_weights = [float(w) for w in heatmap_weights]
        self.pull_weight = pull_weight
        self.push_weight = push_weight
        self.push_type = push_type
        self.swahr = bool(swahr)
        self.scale_weight = float(scale_weight)

    def forward(
        self,
        outputs: Sequence[Tensor],
        heatmaps: Sequence[Tensor],
        masks: Sequence[Tensor],
        tag_indices: Tensor,
    ) -> dict[str, Tensor]:
        k = self.num_keypoints
        if not (len(outputs) == len(heatmaps) == len(masks) == len(self.heatmap_weights)):
            raise ValueError(
                f"{len(outputs)} model outputs, {len(heatmaps)} heatmap targets, {len(masks)} masks and "
                f"{len(self.heatmap_weights)} loss.heatmap_weights: they must match (one per model.strides entry)"
            )
        first = outputs[0]
        lead = k if self.swahr else 0  # SWAHR scale maps in front of every output
        if first.shape[1] <= lead + k or (first.shape[1] - lead - k) % k:
            what = "K scale maps + K heatmaps + K*L tag maps" if self.swahr else "K heatmaps + K*L tag maps"
            raise ValueError(
                f"the model's first output has {first.shape[1]} channels; with data.num_keypoints={k} it must be "
                f"{what} (loss.swahr={self.swahr}: it must match model.swahr). Was the model built for another "
                "data set?"
            )
        parts: dict[str, Tensor] = {}
        total = first.new_zeros((), dtype=torch.float32)
        for i, (out, target, mask, weight) in enumerate(
            zip(outputs, heatmaps, masks, self.heatmap_weights, strict=True)
        ):
            if target.shape[1] != k or out.shape[-2:] != target.shape[-2:]:
                raise ValueError(
                    f"output {i} is {tuple(out.shape)} but its target is {tuple(target.shape)}: "
                    f"check data.num_keypoints and model.strides"
                )
            if self.swahr:
                scale = out[:, :k] * (target > 0).to(out.dtype)
                hm = swahr_heatmap_loss(out[:, k : 2 * k], target, mask, scale).mean()
                sc = scale_loss(scale, mask).mean()
                parts[f"scale/{i}"] = sc
                total = total + self.scale_weight * sc
            else:
                hm = heatmap_loss(out[:, :k], target, mask).mean()
            parts[f"heatmap/{i}"] = hm
            total = total + weight * hm
        pull, push = ae_loss(first[:, lead + k :], tag_indices, self.push_type)
        parts["pull"] = pull.mean()
        parts["push"] = push.mean()
        parts["loss"] = total + self.pull_weight * parts["pull"] + self.push_weight * parts["push"]
        return parts

"""Heatmap MSE and associative-embedding pull/push (Newell et al. 2017; official HigherHRNet recipe)."""

from __future__ import annotations

import pytest
import torch

from bottomup.codec.targets import tag_indices
from bottomup.models.losses import AssociativeEmbeddingLoss, ae_loss, heatmap_loss


def _loop_reference(tags: torch.Tensor, indices: torch.Tensor, push_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-person Python loop over the official formula (L = 1)."""
    pulls, pushes = [], []
    for b in range(tags.shape[0]):
        flat = tags[b].reshape(-1)
        means, pull = [], torch.zeros(())
        for person in indices[b]:
            t = torch.stack([flat[i] for i, v in person.tolist() if v > 0]) if person[:, 1].any() else None
            if t is None:
                continue
            means.append(t.mean())
            pull = pull + ((t - t.mean()) ** 2).mean()
        n = len(means)
        if n == 0:
            pulls.append(torch.zeros(()))
            pushes.append(torch.zeros(()))
            continue
        pulls.append(pull / n)
        if n == 1:
            pushes.append(torch.zeros(()))
            continue
        m = torch.stack(means)
        d = m[:, None] - m[None, :]
        f = torch.exp(-(d**2)) if push_type == "exp" else torch.clamp(1 - d.abs(), min=0)
        pushes.append((f.sum() - n) / (n * (n - 1)) * 0.5)
    return torch.stack(pulls), torch.stack(pushes)


def _indices_for(people: list[list[tuple[float, float]]], k: int, size: int) -> torch.Tensor:
    kp = torch.zeros(len(people), k, 3)
    for p, joints in enumerate(people):
        for j, (x, y) in enumerate(joints):
            kp[p, j] = torch.tensor([x, y, 2.0])
    return torch.from_numpy(tag_indices(kp.numpy(), size, size, max_people=30))


@pytest.mark.parametrize("push_type", ["exp", "max"])
def test_ae_loss_matches_per_person_loop(push_type: str) -> None:
    g = torch.Generator().manual_seed(0)
    b, m, k, h, w = 4, 6, 5, 8, 8
    tags = torch.randn(b, k, h, w, generator=g)
    idx = torch.zeros(b, m, k, 2, dtype=torch.long)
    idx[..., 0] = torch.randint(0, k * h * w, (b, m, k), generator=g)
    idx[..., 1] = (torch.rand(b, m, k, generator=g) > 0.4).long()
    idx[0, :, :, 1] = 0  # no people
    idx[1, 1:, :, 1] = 0  # one person
    pull, push = ae_loss(tags, idx, push_type)
    ref_pull, ref_push = _loop_reference(tags, idx, push_type)
    torch.testing.assert_close(pull, ref_pull)
    torch.testing.assert_close(push, ref_push)
    assert pull[0] == 0 and push[0] == 0 and push[1] == 0 and pull[1] > 0


def test_pull_is_zero_for_identical_tags_and_push_falls_with_separation() -> None:
    k, size = 3, 16
    idx = _indices_for([[(2, 2), (3, 4), (5, 5)], [(10, 10), (12, 11), (13, 13)]], k, size)[None]
    pushes = []
    for gap in [0.0, 0.5, 1.0, 2.0, 4.0]:
        tags = torch.zeros(1, k, size, size)
        tags[..., :8, :8] = 1.0  # person 0's joints all read 1.0
        tags[..., 8:, 8:] = 1.0 + gap  # person 1's joints all read 1 + gap
        pull, push = ae_loss(tags, idx, "exp")
        assert pull.item() == 0.0
        pushes.append(push.item())
    assert pushes[0] == pytest.approx(0.5)  # 1/2 * 2 * exp(0) / (2 * 1)
    assert all(a > b for a, b in zip(pushes, pushes[1:], strict=False))
    assert pushes[-1] == pytest.approx(0.5 * torch.exp(torch.tensor(-16.0)).item(), rel=1e-4)


@pytest.mark.parametrize("num_people", [0, 1, 5])
def test_total_loss_has_finite_gradients(num_people: int) -> None:
    torch.manual_seed(0)
    k, size = 4, 16
    people = [[(float(i * 3 + j), float(i * 2 + j)) for j in range(k)] for i in range(num_people)]
    idx = _indices_for(people, k, size)[None].repeat(2, 1, 1, 1)
    out0 = torch.randn(2, 2 * k, size, size, requires_grad=True)
    out1 = torch.randn(2, k, 2 * size, 2 * size, requires_grad=True)
    hms = [torch.rand(2, k, size, size), torch.rand(2, k, 2 * size, 2 * size)]
    masks = [torch.ones(2, size, size), torch.ones(2, 2 * size, 2 * size)]
    parts = AssociativeEmbeddingLoss(k)([out0, out1], hms, masks, idx)
    parts["loss"].backward()
    assert set(parts) == {"loss", "heatmap/0", "heatmap/1", "pull", "push"}
    assert torch.isfinite(out0.grad).all() and torch.isfinite(out1.grad).all()
    tag_grad = out0.grad[:, k:].abs().sum()
    assert (tag_grad > 0) == (num_people > 0)


def test_heatmap_loss_is_masked_mean_per_image() -> None:
    pred = torch.ones(2, 3, 4, 4)
    target = torch.zeros(2, 3, 4, 4)
    mask = torch.ones(2, 4, 4)
    mask[1, :2] = 0  # half of image 1 ignored
    loss = heatmap_loss(pred, target, mask)
    torch.testing.assert_close(loss, torch.tensor([1.0, 0.5]))


def test_loss_rejects_mismatched_outputs() -> None:
    crit = AssociativeEmbeddingLoss(17, heatmap_weights=[1.0, 1.0])
    out = [torch.zeros(1, 28, 8, 8), torch.zeros(1, 14, 16, 16)]  # a 14-keypoint model
    with pytest.raises(ValueError, match="num_keypoints=17"):
        crit(out, [torch.zeros(1, 17, 8, 8), torch.zeros(1, 17, 16, 16)], [torch.ones(1, 8, 8)] * 2,
             torch.zeros(1, 30, 17, 2, dtype=torch.long))  # fmt: skip
    with pytest.raises(ValueError, match="heatmap_weights"):
        crit(out[:1], [torch.zeros(1, 17, 8, 8)], [torch.ones(1, 8, 8)], torch.zeros(1, 30, 17, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="push_type"):
        AssociativeEmbeddingLoss(17, push_type="cosine")

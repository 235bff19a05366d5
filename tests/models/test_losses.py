"""Heatmap MSE and associative-embedding pull/push (Newell et al. 2017; official HigherHRNet recipe)."""

from __future__ import annotations

import math

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


# --------------------------------------------------------------------------- SWAHR (loss.swahr)


def _swahr_loop_reference(
    outputs: list[torch.Tensor], heatmaps: list[torch.Tensor], masks: list[torch.Tensor], k: int
) -> tuple[list[list[float]], list[list[float]]]:
    """Per-pixel Python loop (float64) over the official SWAHR formulas (``greatlog/SWAHR-HumanPose``
    ``lib/core/loss.py``): for output i, image b, with g the target, p = channel K + j, s = channel j where g > 0:
    dis = ln(g) (ln(g + 1) where g <= 0); h = g + g dis s + g dis^2 s^2 / 2; w = |1 - p| g^0.01 + |p| (1 - g^0.01);
    heatmap = mean of (p - h)^2 w mask, scale = mean of s^2 mask over K x H x W."""
    heat, scale = [], []
    for out, target, mask in zip(outputs, heatmaps, masks, strict=True):
        o, t, m = out.double().tolist(), target.double().tolist(), mask.double().tolist()
        _, _, h, w = target.shape
        heat_i, scale_i = [], []
        for b in range(target.shape[0]):
            acc_h = acc_s = 0.0
            for j in range(k):
                for y in range(h):
                    for x in range(w):
                        g, p, mk = t[b][j][y][x], o[b][k + j][y][x], m[b][y][x]
                        s = o[b][j][y][x] if g > 0 else 0.0
                        dis = math.log(g) if g > 0 else math.log(g + 1)
                        target_h = g + g * dis * s + 0.5 * g * dis**2 * s**2
                        weight = abs(1 - p) * g**0.01 + abs(p) * (1 - g**0.01)
                        acc_h += (p - target_h) ** 2 * weight * mk
                        acc_s += s**2 * mk
            heat_i.append(acc_h / (k * h * w))
            scale_i.append(acc_s / (k * h * w))
        heat.append(heat_i)
        scale.append(scale_i)
    return heat, scale


@pytest.fixture(scope="module")
def real_batch(coco_root):
    """Three augmented coco-mini crops (input 96: maps 24 and 48) with their real targets, masks and tag indices:
    people, crowd masks and Gaussians cut by the crop edges."""
    from conftest import compose_train_config

    from bottomup.build import build_train_dataset
    from bottomup.data import collate

    data = compose_train_config(["experiment=higherhrnet_w32", f"data.root={coco_root}", "data.input_size=96"]).data
    dataset = build_train_dataset(data, [4, 2], train=True, seed=3)
    ids = list(dataset.image_ids)
    picks = [i for i in range(len(ids)) if dataset[(i, 0)]["num_people"] > 1][:2] + [0]
    return collate([dataset[(i, 0)] for i in picks])


def test_swahr_loss_parts_match_per_pixel_loop_of_official_formulas(real_batch) -> None:
    batch = real_batch
    k = 17
    assert any(float(h.max()) > 0.99 for h in batch["heatmaps"]) and any(float(m.min()) == 0 for m in batch["masks"])
    g = torch.Generator().manual_seed(0)
    b = batch["heatmaps"][0].shape[0]
    outputs = [
        torch.randn(b, 3 * k, *batch["heatmaps"][0].shape[-2:], generator=g) * 0.5,
        torch.randn(b, 2 * k, *batch["heatmaps"][1].shape[-2:], generator=g) * 0.5,
    ]
    outputs[0][:, k : 2 * k] += batch["heatmaps"][0]  # heatmaps near the targets, as in training
    crit = AssociativeEmbeddingLoss(k, heatmap_weights=[1.0, 0.5], pull_weight=1e-3, push_weight=2e-3, swahr=True)
    parts = crit(outputs, batch["heatmaps"], batch["masks"], batch["tag_indices"])
    assert set(parts) == {"loss", "heatmap/0", "heatmap/1", "scale/0", "scale/1", "pull", "push"}
    heat, scale = _swahr_loop_reference(outputs, batch["heatmaps"], batch["masks"], k)
    ref_pull, ref_push = _loop_reference(outputs[0][:, 2 * k :], batch["tag_indices"], "exp")
    for i in range(2):
        assert abs(parts[f"heatmap/{i}"].item() - sum(heat[i]) / b) < 1e-6
        assert abs(parts[f"scale/{i}"].item() - sum(scale[i]) / b) < 1e-6
        assert sum(scale[i]) > 0
    assert abs(parts["pull"].item() - ref_pull.mean().item()) < 1e-6
    assert abs(parts["push"].item() - ref_push.mean().item()) < 1e-6
    total = sum(heat[0]) / b + 0.5 * sum(heat[1]) / b + (sum(scale[0]) + sum(scale[1])) / b
    total += 1e-3 * ref_pull.mean().item() + 2e-3 * ref_push.mean().item()
    assert abs(parts["loss"].item() - total) < 1e-6


def test_swahr_scale_zero_gives_the_weighted_loss_on_the_plain_target() -> None:
    """With s = 0 the target is the Gaussian itself and the scale regulariser is 0; the weight is the official
    |1 - p| g^0.01 + |p| (1 - g^0.01): ~|p| on the background (a false positive costs |p|^3), ~|1 - p| on peaks."""
    from bottomup.models.losses import scale_loss, swahr_heatmap_loss

    target = torch.tensor([[[[0.0, 1.0]]]])
    pred = torch.tensor([[[[0.5, 0.5]]]])
    mask = torch.ones(1, 1, 2)
    scale = torch.zeros(1, 1, 1, 2)
    loss = swahr_heatmap_loss(pred, target, mask, scale)
    torch.testing.assert_close(loss, torch.tensor([(0.25 * 0.5 + 0.25 * 0.5) / 2]))
    assert scale_loss(scale, mask).item() == 0
    # s > 0 sharpens the target (g^(1+s) to second order): a pixel off the peak gets a lower target.
    g = torch.tensor([[[[0.5]]]])
    higher = swahr_heatmap_loss(torch.full_like(g, 0.5), g, torch.ones(1, 1, 1), torch.full_like(g, 1.0))
    assert higher.item() > 0  # the target moved below 0.5 = pred


@pytest.mark.parametrize("num_people", [0, 1, 5])
def test_swahr_loss_has_finite_gradients(num_people: int) -> None:
    from bottomup.codec.targets import render_heatmaps

    torch.manual_seed(0)
    k, size = 4, 16
    people = [[(float(i * 3 + j), float(i * 2 + j)) for j in range(k)] for i in range(num_people)]
    idx = _indices_for(people, k, size)[None].repeat(2, 1, 1, 1)
    kp = torch.tensor([[[x, y, 2.0] for x, y in p] for p in people]).reshape(num_people, k, 3).numpy()
    hms = [
        torch.from_numpy(render_heatmaps(kp, size, size, 2.0))[None].repeat(2, 1, 1, 1),
        torch.from_numpy(render_heatmaps(kp * [2, 2, 1], 2 * size, 2 * size, 2.0))[None].repeat(2, 1, 1, 1),
    ]
    out0 = torch.randn(2, 3 * k, size, size, requires_grad=True)
    out1 = torch.randn(2, 2 * k, 2 * size, 2 * size, requires_grad=True)
    masks = [torch.ones(2, size, size), torch.ones(2, 2 * size, 2 * size)]
    parts = AssociativeEmbeddingLoss(k, swahr=True)([out0, out1], hms, masks, idx)
    parts["loss"].backward()
    assert all(torch.isfinite(v) for v in parts.values())
    assert torch.isfinite(out0.grad).all() and torch.isfinite(out1.grad).all()
    for out, hm in ((out0, hms[0]), (out1, hms[1])):
        scale_grad = out.grad[:, :k]
        assert torch.equal(scale_grad != 0, hm > 0)  # scales learn only under the Gaussians
        assert out.grad[:, k : 2 * k].abs().sum() > 0
    assert (out0.grad[:, 2 * k :].abs().sum() > 0) == (num_people > 0)


def test_swahr_loss_rejects_a_plain_model() -> None:
    crit = AssociativeEmbeddingLoss(17, swahr=True)
    out = [torch.zeros(1, 34, 8, 8), torch.zeros(1, 17, 16, 16)]  # HigherHRNet layout
    with pytest.raises(ValueError, match=r"K scale maps \+ K heatmaps \+ K\*L tag maps \(loss.swahr=True"):
        crit(out, [torch.zeros(1, 17, 8, 8), torch.zeros(1, 17, 16, 16)], [torch.ones(1, 8, 8), torch.ones(1, 16, 16)],
             torch.zeros(1, 30, 17, 2, dtype=torch.long))  # fmt: skip

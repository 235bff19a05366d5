"""ViTPose's layer-wise learning-rate decay (``bottomup.engine.optim``, ``conf/optim/adamw_layer_decay.yaml``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from bottomup.build import build_optimizer
from tests.conftest import compose_train_config

FIXTURE = Path(__file__).parents[1] / "fixtures" / "vitpose_b_layer_decay.json"


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)


class _Backbone(nn.Module):
    def __init__(self, width: int = 8, depth: int = 3) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, width, 4, 4)
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, width))
        self.blocks = nn.ModuleList(_Block(width) for _ in range(depth))
        self.last_norm = nn.LayerNorm(width)


class _TinyViTModel(nn.Module):
    """A stand-in with ViTPose's parameter names (``backbone.patch_embed``, ``backbone.blocks.i``, ...) and a head."""

    def __init__(self, depth: int = 3) -> None:
        super().__init__()
        self.backbone = _Backbone(depth=depth)
        self.head = nn.Conv2d(8, 4, 1)


def _optimizer(model: nn.Module, overrides: list[str] = ()):
    cfg = compose_train_config(["optim=adamw_layer_decay", "schedule.warmup_iters=4", *overrides])
    return build_optimizer(cfg.optim, cfg.schedule, model, iters_per_epoch=10)


def _rates(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, tuple[float, float]]:
    by_param = {id(p): name for name, p in model.named_parameters()}
    return {
        by_param[id(p)]: (g["initial_lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]
    }  # fmt: skip


def test_layer_decay_rates_by_depth_and_no_decay_rule() -> None:
    model = _TinyViTModel(depth=3)
    optimizer, _ = _optimizer(model, ["optim.lr=1.0", "optim.param_groups.layer_decay_rate=0.5"])
    rates = _rates(optimizer, model)
    assert set(rates) == {n for n, _ in model.named_parameters()}  # every parameter in exactly one group
    # depth: embeddings 0, block i -> i + 1, the rest 4 (L + 1 with L = 3); rate 0.5 ** (4 - depth)
    assert rates["backbone.pos_embed"] == (0.5**4, 0.0)
    assert rates["backbone.patch_embed.weight"] == (0.5**4, 0.1)
    assert rates["backbone.patch_embed.bias"] == (0.5**4, 0.0)
    assert rates["backbone.blocks.0.fc.weight"] == (0.5**3, 0.1)
    assert rates["backbone.blocks.2.fc.weight"] == (0.5**1, 0.1)
    assert rates["backbone.blocks.1.norm1.weight"] == (0.5**2, 0.0)  # 1-D: no decay
    assert rates["backbone.last_norm.weight"] == (1.0, 0.0)
    assert rates["head.weight"] == (1.0, 0.1)
    assert rates["head.bias"] == (1.0, 0.0)


def test_the_schedule_and_resume_keep_each_groups_scale(tmp_path: Path) -> None:
    """The warm-up and milestones scale every group alike, and a resumed run computes the same rates."""
    from bottomup.engine.trainer import TrainState

    torch.manual_seed(0)
    model = _TinyViTModel()
    optimizer, scheduler = _optimizer(model)
    scales = [g["lr_scale"] for g in optimizer.param_groups]
    x = torch.randn(2, 3, 8, 8)
    for _ in range(6):
        optimizer.zero_grad()
        model.head(model.backbone.patch_embed(x)).square().mean().backward()
        optimizer.step()
        scheduler.step()
        head_lr = max(g["lr"] for g in optimizer.param_groups)
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([head_lr * s for s in scales], rel=1e-12)
    state = TrainState(model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False), config="")
    saved = state.state_dict()
    fresh_model = _TinyViTModel()
    fresh = TrainState(fresh_model, *_optimizer(fresh_model), torch.amp.GradScaler("cpu", enabled=False), config="")
    fresh.load_state_dict(saved)
    assert [g["lr"] for g in fresh.optimizer.param_groups] == pytest.approx([g["lr"] for g in optimizer.param_groups])


def test_layer_decay_needs_a_vit_backbone() -> None:
    with pytest.raises(ValueError, match=r"optim.param_groups.*backbone.blocks"):
        _optimizer(nn.Sequential(nn.Conv2d(3, 4, 3)))
    with pytest.raises(ValueError, match=r"layer_decay_rate must be in \(0, 1\]"):
        _optimizer(_TinyViTModel(), ["optim.param_groups.layer_decay_rate=1.5"])


def test_plain_optimisers_keep_one_group() -> None:
    model = _TinyViTModel()
    cfg = compose_train_config([])
    optimizer, _ = build_optimizer(cfg.optim, cfg.schedule, model, iters_per_epoch=10)
    assert len(optimizer.param_groups) == 1 and optimizer.param_groups[0]["initial_lr"] == cfg.optim.lr


def test_vit_b_multipliers_equal_vitposes_layer_decay_rule() -> None:
    """Every backbone parameter of ``vitpose_b_ae`` gets the rate multiplier and weight decay that ViTPose's
    ``LayerDecayOptimizerConstructor`` gives the same name (fixture dumped from the official code with its ViT-B
    config: 12 blocks, rate 0.75, weight decay 0.1); the neck and head get what it gives its head (1, decay unless
    1-D or a bias)."""
    from bottomup.build import build_model

    official = json.loads(FIXTURE.read_text())["params"]
    cfg = compose_train_config(["experiment=vitpose_b_ae", "optim.lr=1.0"])
    with torch.device("meta"):
        model = build_model(cfg.model, pretrained=False)
    optimizer, _ = build_optimizer(cfg.optim, cfg.schedule, model, iters_per_epoch=10)
    ours = _rates(optimizer, model)
    backbone = {n for n in ours if n.startswith("backbone.")}
    assert backbone == {n for n in official if n.startswith("backbone.")}
    assert len(backbone) == 149  # patch_embed 2, pos_embed 1, 12 blocks x 12, last_norm 2
    for name in backbone:
        assert ours[name] == pytest.approx((official[name]["lr_scale"], official[name]["weight_decay"]), rel=1e-6), name
    head_rule = {(o["lr_scale"], o["weight_decay"]) for n, o in official.items() if not n.startswith("backbone.")}
    assert head_rule == {(1.0, 0.1), (1.0, 0.0)}
    for name, param in model.named_parameters():
        if not name.startswith("backbone."):
            assert ours[name] == (1.0, 0.0 if param.ndim == 1 or name.endswith(".bias") else 0.1), name

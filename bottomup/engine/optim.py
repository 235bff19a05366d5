"""Parameter groups of the optimiser: ViTPose's layer-wise learning-rate decay.

``optim.param_groups`` (a ``_partial_`` ``_target_`` taking the model) turns a model into the optimiser's parameter
groups; each group may carry ``lr_scale``, which :func:`apply_lr_scale` multiplies into its ``lr`` once the optimiser
exists (the schedules then scale every group's rate alike: ``LambdaLR`` keeps each group's initial rate).
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn
from torch.optim import Optimizer

__all__ = ["apply_lr_scale", "base_lr", "layer_decay_groups", "vit_layer_id"]

_BLOCK = re.compile(r"^backbone\.blocks\.(\d+)\.")
_EMBEDDINGS = ("backbone.cls_token", "backbone.mask_token", "backbone.pos_embed")


def vit_layer_id(name: str, num_layers: int) -> int:
    """The depth of parameter ``name`` in a ViT of ``num_layers`` blocks, as ViTPose's ``get_num_layer_for_vit``
    (``mmcv_custom/layer_decay_optimizer_constructor.py``) numbers it: 0 for the embeddings (``backbone.pos_embed``,
    ``backbone.cls_token``, ``backbone.mask_token``, ``backbone.patch_embed.*``), ``i + 1`` for
    ``backbone.blocks.i.*``, ``num_layers + 1`` for everything else (``backbone.last_norm``, the neck, the head).
    """
    if name in _EMBEDDINGS or name.startswith("backbone.patch_embed"):
        return 0
    block = _BLOCK.match(name)
    if block:
        return int(block.group(1)) + 1
    return num_layers + 1


def _num_blocks(model: nn.Module) -> int:
    ids = {int(m.group(1)) for name, _ in model.named_parameters() if (m := _BLOCK.match(name))}
    if not ids:
        raise ValueError(
            f"optim.param_groups: layer-wise LR decay needs a ViT backbone (parameters backbone.blocks.<i>.*), "
            f"{type(model).__name__} has none; use an optimiser without param_groups (e.g. optim=adam) for this model"
        )
    return max(ids) + 1


def layer_decay_groups(model: nn.Module, layer_decay_rate: float = 0.75) -> list[dict[str, Any]]:
    """Parameter groups for ViTPose's layer-wise learning-rate decay (Xu et al. 2022, Sec. 4.1; official
    ``LayerDecayOptimizerConstructor``), for a model whose ViT backbone is under ``backbone.``.

    With ``L`` blocks, a parameter at depth ``d`` (:func:`vit_layer_id`: embeddings 0, block ``i`` ``i + 1``, the rest
    ``L + 1``) learns at ``layer_decay_rate ** (L + 1 - d)`` times the base rate: the neck, head and last norm at the
    full rate, the patch embedding at ``rate ** (L + 1)``. Biases, every 1-D parameter (norms) and ``pos_embed`` get no
    weight decay (``weight_decay: 0.0`` in their group); the others keep the optimiser's ``weight_decay``. Frozen
    parameters (``requires_grad=False``) are left out, as in the official code.

    Args:
        model: a model with ``backbone.blocks.<i>.*`` parameters (``bottomup.models.ViTPoseAE``).
        layer_decay_rate: the decay per block (ViTPose: 0.8 for ViT-S, 0.75 for B, 0.8 for L, 0.85 for H), in (0, 1].

    Returns:
        Groups ``{"params", "param_names", "lr_scale"[, "weight_decay"]}``, one per (depth, decay or not), in the
        order of ``model.named_parameters()``; pass them to the optimiser, then :func:`apply_lr_scale`.

    Raises:
        ValueError: ``layer_decay_rate`` outside (0, 1], or a model without ``backbone.blocks`` (the message names
            ``optim.param_groups``).
    """
    rate = float(layer_decay_rate)
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"optim.param_groups.layer_decay_rate must be in (0, 1], got {layer_decay_rate}")
    num_layers = _num_blocks(model)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim == 1 or name.endswith(".bias") or "pos_embed" in name
        depth = vit_layer_id(name, num_layers)
        group = groups.get((depth, no_decay))
        if group is None:
            group = {"params": [], "param_names": [], "lr_scale": rate ** (num_layers + 1 - depth)}
            if no_decay:
                group["weight_decay"] = 0.0
            groups[depth, no_decay] = group
        group["params"].append(param)
        group["param_names"].append(name)
    return list(groups.values())


def apply_lr_scale(optimizer: Optimizer) -> None:
    """Multiply each parameter group's ``lr`` by its ``lr_scale`` (groups without one are left as they are). Call it
    once, right after the optimiser is made and before its schedule (which keeps each group's rate as its base)."""
    for group in optimizer.param_groups:
        if "lr_scale" in group:
            group["lr"] = group["lr"] * group["lr_scale"]


def base_lr(optimizer: Optimizer) -> float:
    """The learning rate to log: the largest of the groups' (the rate of the groups at ``lr_scale`` 1, e.g. the
    head under layer-wise decay; the only group's for a plain optimiser)."""
    return max(float(g["lr"]) for g in optimizer.param_groups)

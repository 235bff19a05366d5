"""ViTPose backbones (plain Vision Transformers) under the associative-embedding head: bottom-up ViTPose.

The backbone's modules (and therefore every ``state_dict`` key and shape) are those of the official ViTPose ``ViT``
(``mmpose/models/backbones/vit.py`` of ``ViTAE-Transformer/ViTPose``): ``patch_embed.proj`` (16 x 16 conv, stride 16,
padding 2), ``pos_embed`` ``(1, N + 1, C)`` with a class-token slot (no class token), ``blocks.i.{norm1, attn.qkv,
attn.proj, norm2, mlp.fc1, mlp.fc2}`` and ``last_norm``; so the ViTPose release checkpoints (their ``backbone.``
part) and the MAE pre-training checkpoints it starts from load (:func:`bottomup.models.weights.load_vit_pretrained`).

Two differences from the official forward, both needed bottom-up (inputs are not 256 x 192 and differ per image):

* the absolute position embeddings are resized at run time to the token grid of the input, by the bicubic rule of
  the official ``get_abs_pos`` (which the official forward never calls: it adds the stored ``pos_embed`` as it is,
  so only the 256 x 192 grid it was built for works) -- :func:`resize_pos_embed`;
* the attention is ``torch.nn.functional.scaled_dot_product_attention`` (same arithmetic up to float rounding;
  memory-efficient / flash kernels on GPUs, where bottom-up token counts are 4 - 16 x the top-down ones).

:class:`ViTPoseAE` puts a neck that upsamples the 1/16 tokens to 1/4 and the HigherHRNet associative-embedding head
(optionally its 1/2 branch, and the SWAHR scale heads) on it, with the outputs of ``HigherHRNet``.

References:
    * Y. Xu, J. Zhang, Q. Zhang, D. Tao. "ViTPose: Simple Vision Transformer Baselines for Human Pose Estimation".
      NeurIPS 2022; official code ``ViTAE-Transformer/ViTPose``.
    * K. He, X. Chen, S. Xie, Y. Li, P. Dollar, R. Girshick. "Masked Autoencoders Are Scalable Vision Learners"
      (MAE). CVPR 2022; official code ``facebookresearch/mae``.
    * A. Dosovitskiy et al. "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale". ICLR 2021.
    * B. Cheng et al. "HigherHRNet" (CVPR 2020) and A. Newell et al. "Associative Embedding" (NeurIPS 2017) for the
      head, see ``bottomup.models.hrnet``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from bottomup.models.hrnet import (
    _check_int,
    _check_strides,
    _deconv_stage,
    _scale_head,
    higher_resolution_outputs,
)
from bottomup.models.weights import load_vit_pretrained

__all__ = [
    "VIT_SIZES",
    "VIT_ARCHS",
    "NECKS",
    "ViTSize",
    "VisionTransformer",
    "ViTPoseAE",
    "token_grid",
    "resize_pos_embed",
]


@dataclass(frozen=True)
class ViTSize:
    """One ViTPose backbone size (the ``backbone`` of the official ``ViTPose_<size>_coco_256x192.py`` configs).

    Attributes:
        embed_dim: token width ``C``.
        depth: transformer blocks.
        num_heads: attention heads.
        drop_path_rate: stochastic-depth rate of the last block (linear from 0 over the blocks).
    """

    embed_dim: int
    depth: int
    num_heads: int
    drop_path_rate: float


#: ViTPose-S / B / L / H as the official configs build them (``configs/body/2d_kpt_sview_rgb_img/topdown_heatmap/
#: coco/ViTPose_{small,base,large,huge}_coco_256x192.py``): width, depth, heads, drop-path rate.
VIT_SIZES: dict[str, ViTSize] = {
    "small": ViTSize(384, 12, 12, 0.1),
    "base": ViTSize(768, 12, 12, 0.3),
    "large": ViTSize(1024, 24, 16, 0.5),
    "huge": ViTSize(1280, 32, 16, 0.55),
}
#: ``ViTPoseAE(arch=...)`` choices (``model.arch``): a size of :data:`VIT_SIZES`, or ``"custom"`` (explicit
#: ``embed_dim`` / ``depth`` / ``num_heads``, e.g. a tiny CPU network).
VIT_ARCHS: tuple[str, ...] = (*VIT_SIZES, "custom")
#: ``ViTPoseAE(neck=...)`` choices (``model.neck``): ViTPose's "classic" and "simple" decoders.
NECKS: tuple[str, ...] = ("classic", "simple")

_LN_EPS = 1e-6  # official: partial(nn.LayerNorm, eps=1e-6)
_BN_MOMENTUM = 0.1
#: The backbone's stride (the patch size ``ViTPoseAE`` uses): its necks upsample 4 x to the head's stride 4.
PATCH_SIZE = 16


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return value, value
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")


def token_grid(height: int, width: int, patch_size: int = PATCH_SIZE, padding: int = 2) -> tuple[int, int]:
    """The token grid ``(Hp, Wp)`` the patch embedding gives for an ``height x width`` input:
    ``floor((H + 2 * padding - patch_size) / patch_size) + 1`` per side (a ``patch_size`` conv of that stride and
    padding). With patch 16 and padding 2 that is ``H / 16`` for every multiple of 16."""
    return (
        (height + 2 * padding - patch_size) // patch_size + 1,
        (width + 2 * padding - patch_size) // patch_size + 1,
    )


def resize_pos_embed(pos_embed: Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> Tensor:
    """The position embedding each token of a ``new_grid`` input gets, from the stored ``pos_embed``.

    Official ViTPose behaviour: the forward adds ``pos_embed[:, 1:] + pos_embed[:, :1]`` (the class-token slot is
    added to every patch token; there is no class token); for another grid, the patch part is first resized as
    the official ``get_abs_pos`` does it (``F.interpolate(..., mode="bicubic", align_corners=False)`` of the
    ``(1, C, Hg, Wg)`` grid), then the class-token slot is added.

    Args:
        pos_embed: ``(1, Hg * Wg + 1, C)``, row-major grid after the class-token slot.
        grid: ``(Hg, Wg)``, the grid ``pos_embed`` holds.
        new_grid: ``(Hp, Wp)``, the input's token grid.

    Returns:
        ``(1, Hp * Wp, C)``, to add to the ``(N, Hp * Wp, C)`` tokens (row-major).

    Raises:
        ValueError: ``pos_embed`` is not ``(1, Hg * Wg + 1, C)``.
    """
    hg, wg = grid
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1 or pos_embed.shape[1] != hg * wg + 1:
        raise ValueError(f"pos_embed must be (1, {hg} * {wg} + 1, C) for grid {grid}, got {tuple(pos_embed.shape)}")
    cls_slot, patches = pos_embed[:, :1], pos_embed[:, 1:]
    # traced / exported graphs always resize (the same numbers at the stored grid: bicubic at scale 1 is the
    # identity), so that a graph traced at one size keeps working at the others
    if tuple(new_grid) != (hg, wg) or torch.jit.is_tracing() or torch.compiler.is_compiling():
        c = pos_embed.shape[-1]
        patches = patches.reshape(1, hg, wg, c).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=tuple(new_grid), mode="bicubic", align_corners=False)
        patches = patches.permute(0, 2, 3, 1).reshape(1, -1, c)
    return patches + cls_slot


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al. 2016; timm's ``drop_path``): in training, each sample's residual
    branch is zeroed with probability ``p`` and the kept ones scaled by ``1 / (1 - p)``; the identity in eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    """Multi-head self-attention with one ``qkv`` projection (keys ``qkv``, ``proj`` as ViTPose)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, t, c = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # softmax(q k^T / sqrt(d)) v
        return self.proj(out.transpose(1, 2).reshape(n, t, c))


class Mlp(nn.Module):
    """``fc1`` -> GELU (exact) -> ``fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + drop_path(attn(norm1(x)))``, then ``x + drop_path(mlp(norm2(x)))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """``proj``: a ``patch_size`` conv of stride ``patch_size`` and padding ``padding`` (ViTPose: 16, 16, 2)."""

    def __init__(self, embed_dim: int, patch_size: int, padding: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class VisionTransformer(nn.Module):
    """The ViTPose backbone: a plain, non-hierarchical ViT giving ``(N, C, Hp, Wp)`` features at stride
    ``patch_size``.

    State-dict keys and shapes are the official ViTPose ``ViT``'s (``patch_embed.proj.{weight,bias}``, ``pos_embed``,
    ``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.{weight,bias}``, ``last_norm.{weight,bias}``);
    LayerNorm eps 1e-6, GELU, stochastic depth ``linspace(0, drop_path_rate, depth)`` over the blocks. Its forward
    is the official one (patch embedding, ``+ pos_embed``, blocks, ``last_norm``, tokens back to a map) except
    that ``pos_embed`` is resized to the input's token grid (:func:`resize_pos_embed`).

    Args:
        embed_dim: token width ``C`` (S / B / L / H: 384 / 768 / 1024 / 1280).
        depth: blocks (12 / 12 / 24 / 32).
        num_heads: attention heads (12 / 12 / 16 / 16); must divide ``embed_dim``.
        mlp_ratio: MLP hidden width / ``C``.
        patch_size: patch-embedding kernel and stride.
        patch_padding: patch-embedding padding (ViTPose: 2, from ``4 + 2 * (ratio // 2 - 1)`` with ``ratio=1``).
        qkv_bias: bias in ``attn.qkv`` (ViTPose: true).
        drop_path_rate: stochastic depth of the last block.
        img_size: ``(H, W)`` whose token grid ``pos_embed`` stores (ViTPose: ``(256, 192)``: 16 x 12 + 1 slots).
        grad_checkpointing: in training, recompute each block's activations in the backward pass instead of
            keeping them (official ``use_checkpoint``): less memory at bottom-up token counts, ~30 % more time.
            Drop-path masks are recomputed from the saved random state, so gradients are unchanged.

    Attributes:
        grid (tuple[int, int]): the stored grid ``(img_size[0] // patch_size, img_size[1] // patch_size)``.

    Raises:
        ValueError: a non-positive size, ``num_heads`` not dividing ``embed_dim``, ``patch_padding`` not in
            ``[0, patch_size / 2)``, ``drop_path_rate`` outside ``[0, 1)``, an ``img_size`` below a patch.
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        patch_size: int = PATCH_SIZE,
        patch_padding: int = 2,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        img_size: int | Sequence[int] = (256, 192),
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("depth", depth), ("num_heads", num_heads)):
            _check_int(f"model.{name}", value, 1)
        _check_int("model.patch_size", patch_size, 1)
        if embed_dim % num_heads:
            raise ValueError(f"model.num_heads={num_heads} must divide model.embed_dim={embed_dim}")
        if (
            isinstance(patch_padding, bool)
            or not isinstance(patch_padding, int)
            or not 0 <= 2 * patch_padding < patch_size
        ):
            raise ValueError(f"patch_padding must be an int in [0, patch_size / 2), got {patch_padding!r}")
        if not 0.0 <= float(drop_path_rate) < 1.0:
            raise ValueError(f"model.drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        if not float(mlp_ratio) > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio!r}")
        h, w = _pair(img_size, "model.img_size")
        if h < patch_size or w < patch_size:
            raise ValueError(f"model.img_size={[h, w]} must be at least one patch ({patch_size} px) per side")
        if not isinstance(grad_checkpointing, bool):
            raise ValueError(f"model.grad_checkpointing must be true or false, got {grad_checkpointing!r}")
        self.grad_checkpointing = grad_checkpointing
        self.embed_dim, self.depth, self.num_heads = embed_dim, depth, num_heads
        self.patch_size, self.patch_padding = patch_size, patch_padding
        self.img_size = (h, w)
        self.grid = (h // patch_size, w // patch_size)
        self.patch_embed = PatchEmbed(embed_dim, patch_size, patch_padding)
        # (1, N + 1, C): slot 0 is the class token's of the MAE pre-training; ViTPose adds it to every patch token
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1] + 1, embed_dim))
        rates = torch.linspace(0, float(drop_path_rate), depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, r) for r in rates)
        self.last_norm = nn.LayerNorm(embed_dim, eps=_LN_EPS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation (``ViT.__init__`` + ``init_weights`` without ``pretrained``): ``pos_embed``
        and every ``Linear`` weight ~ truncated N(0, 0.02^2) (cut at +-2, absolute, as timm's ``trunc_normal_``),
        ``Linear`` biases 0, LayerNorm weight 1 and bias 0; the patch-embedding conv keeps PyTorch's default."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` images -> ``(N, C, Hp, Wp)`` features, ``(Hp, Wp) = token_grid(H, W)`` (``H / 16`` x
        ``W / 16`` for multiples of 16 with ViTPose's patch embedding)."""
        x = self.patch_embed(x)
        n, c, hp, wp = x.shape
        x = x.flatten(2).transpose(1, 2) + resize_pos_embed(self.pos_embed, self.grid, (hp, wp))
        checkpointed = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if checkpointed else block(x)
        x = self.last_norm(x)
        return x.transpose(1, 2).reshape(n, c, hp, wp)


def _classic_neck(in_channels: int, channels: int) -> nn.Sequential:
    """ViTPose's classic decoder (``TopdownHeatmapSimpleHead`` with ``num_deconv_layers=2``): two
    ``ConvTranspose2d(k=4, s=2, p=1, no bias)`` + BN + ReLU of ``channels`` each, 1/16 -> 1/4."""
    layers: list[nn.Module] = []
    for c_in in (in_channels, channels):
        layers += [
            nn.ConvTranspose2d(c_in, channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class _SimpleNeck(nn.Module):
    """ViTPose's simple decoder before its 3 x 3 output conv: ReLU, then bilinear x 4 (``align_corners=False``)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(F.relu(x), scale_factor=4, mode="bilinear", align_corners=False)


class ViTPoseAE(nn.Module):
    """A ViTPose backbone with an associative-embedding head (bottom-up ViTPose), with ``HigherHRNet``'s interface.

    * ``backbone`` (:class:`VisionTransformer`): stride-16 tokens, ``C`` channels;
    * ``neck``: 1/16 -> 1/4. ``"classic"``: two 4 x 4 transposed convs of ``neck_channels`` with BN + ReLU
      (ViTPose's classic decoder); ``"simple"``: ReLU + bilinear x 4 (ViTPose's simple decoder; its features keep
      ``C`` channels);
    * ``final_layers[0]``: ``K + K * tag_dim`` maps at stride 4 (heatmaps, then tags: joint ``k``, dimension ``d``
      at channel ``K + k * tag_dim + d``); a 1 x 1 conv after the classic neck, 3 x 3 (padding 1) after the simple
      one, as ViTPose's output convs;
    * each further stride (``strides=(4, 2)``): HigherHRNet's branch -- the features concatenated with the previous
      output, ``ConvTranspose2d(k=4, s=2, p=1)`` + BN + ReLU to ``branch_channels``, ``num_deconv_blocks``
      BasicBlocks (``deconv_layers[i - 1]``), a 1 x 1 conv to ``K`` heatmaps (``final_layers[i]``);
    * ``swahr=True``: SWAHR scale heads (``conv_scale_layers[i]``, as ``HigherHRNet``'s) on the features of each
      output, their K maps in front of it.

    Outputs (:meth:`forward`) as ``HigherHRNet``: stride 4 ``[scales K (SWAHR only), heatmaps K, tags K * tag_dim]``,
    stride 2 ``[scales K (SWAHR only), heatmaps K]``. Parameter names: ``backbone.*`` (the ViTPose backbone's keys
    under ``backbone.``, as in ViTPose's checkpoints; the layer-wise learning-rate decay rule keys on them),
    ``neck.*``, ``final_layers.*``, ``deconv_layers.*``, ``conv_scale_layers.*``.

    Input: any ``H``, ``W`` that are multiples of :attr:`input_multiple` (16, the patch size: ViTPose's patch
    embedding, 16 x 16 stride 16 padding 2, gives ``H / 16 x W / 16`` tokens exactly then, and the outputs are
    ``H / 4 x W / 4`` and ``H / 2 x W / 2``); the project's test-time sizes (multiples of 32 / 64) all are.
    Cost grows with the square of the tokens ``H W / 256``: 1024 at 512 x 512.

    Args:
        arch: one of :data:`VIT_ARCHS`: ``"small"``, ``"base"``, ``"large"``, ``"huge"`` (:data:`VIT_SIZES`) or
            ``"custom"`` (then ``embed_dim``, ``depth`` and ``num_heads`` are required).
        num_keypoints: ``K``.
        strides: ``(4,)`` or ``(4, 2)`` (starts with 4, halves).
        tag_dim: tag channels per keypoint.
        neck: one of :data:`NECKS`.
        neck_channels: channels of the classic neck (ViTPose: 256).
        branch_channels: channels of the stride-2 branch (HigherHRNet-W32's: 32; at 512 x 512 input its four
            BasicBlocks cost ~4.8 GMAC at 32 channels, ~310 at 256).
        num_deconv_blocks: BasicBlocks after each stride-2 deconvolution (HigherHRNet: 4).
        drop_path_rate: stochastic depth of the last block; ``None``: the size's (0.1 / 0.3 / 0.5 / 0.55; 0 for
            ``"custom"``).
        img_size: ``(H, W)`` of the stored position-embedding grid (ViTPose's checkpoints: ``(256, 192)``); any
            input size works (:func:`resize_pos_embed`).
        pretrained: a local MAE or ViTPose checkpoint for the backbone
            (:func:`bottomup.models.weights.load_vit_pretrained`); nothing is ever downloaded.
        swahr: add the SWAHR scale heads and output layout.
        embed_dim, depth, num_heads: override the size (required with ``arch="custom"``).
        mlp_ratio: MLP width / ``C`` (4).
        grad_checkpointing: recompute the backbone blocks in the backward pass (less memory; see
            :class:`VisionTransformer`).

    Attributes:
        strides, num_keypoints, tag_dim, swahr: as the arguments.
        out_channels (tuple[int, ...]): channels of each output, ``(2K, K)`` (SWAHR ``(3K, 2K)``) with
            ``tag_dim=1``.
        arch (str), embed_dim (int), neck_type (str): what was built.
        input_multiple (int): every input side must be a multiple of it (16).

    Raises:
        ValueError: a bad argument (the message names its ``model.*`` key: an unknown ``model.arch`` or
            ``model.neck``, ``"custom"`` without sizes, non-positive sizes, bad ``model.strides``, ...); from
            ``pretrained``, what :func:`~bottomup.models.weights.load_vit_pretrained` raises.
        FileNotFoundError: ``pretrained`` does not exist.

    Example:
        >>> model = ViTPoseAE("custom", embed_dim=32, depth=1, num_heads=2).eval()
        >>> [tuple(o.shape) for o in model(torch.zeros(1, 3, 64, 96))]
        [(1, 34, 16, 24), (1, 17, 32, 48)]
    """

    input_multiple = PATCH_SIZE

    def __init__(
        self,
        arch: str = "base",
        num_keypoints: int = 17,
        strides: Sequence[int] = (4, 2),
        tag_dim: int = 1,
        neck: str = "classic",
        neck_channels: int = 256,
        num_deconv_blocks: int = 4,
        drop_path_rate: float | None = None,
        img_size: int | Sequence[int] = (256, 192),
        pretrained: str | os.PathLike[str] | None = None,
        swahr: bool = False,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        grad_checkpointing: bool = False,
        branch_channels: int = 32,
    ) -> None:
        super().__init__()
        if arch not in VIT_ARCHS:
            raise ValueError(f"model.arch={arch!r} is not one of {', '.join(VIT_ARCHS)}")
        if neck not in NECKS:
            raise ValueError(f"model.neck={neck!r} is not one of {', '.join(NECKS)}")
        if arch == "custom":
            missing = [
                n for n, v in (("embed_dim", embed_dim), ("depth", depth), ("num_heads", num_heads)) if v is None
            ]
            if missing:
                raise ValueError(f"model.arch=custom needs model.{', model.'.join(missing)}")
            size = ViTSize(embed_dim, depth, num_heads, 0.0)  # type: ignore[arg-type]
        else:
            base = VIT_SIZES[arch]
            size = ViTSize(
                embed_dim if embed_dim is not None else base.embed_dim,
                depth if depth is not None else base.depth,
                num_heads if num_heads is not None else base.num_heads,
                base.drop_path_rate,
            )
        self.arch, self.neck_type = arch, neck
        self.num_keypoints = _check_int("model.num_keypoints", num_keypoints, 1)
        self.tag_dim = _check_int("model.tag_dim", tag_dim, 1)
        neck_channels = _check_int("model.neck_channels", neck_channels, 1)
        branch_channels = _check_int("model.branch_channels", branch_channels, 1)
        _check_int("model.num_deconv_blocks", num_deconv_blocks, 0)
        try:
            self.strides = _check_strides(strides)
        except ValueError as e:
            raise ValueError(f"model.{e}") from None
        if not isinstance(swahr, bool):
            raise ValueError(f"model.swahr must be true or false, got {swahr!r}")
        self.swahr = swahr
        rate = size.drop_path_rate if drop_path_rate is None else drop_path_rate

        self.backbone = VisionTransformer(
            embed_dim=size.embed_dim,
            depth=size.depth,
            num_heads=size.num_heads,
            mlp_ratio=mlp_ratio,
            drop_path_rate=rate,
            img_size=img_size,
            grad_checkpointing=grad_checkpointing,
        )
        self.embed_dim = size.embed_dim
        if neck == "classic":
            self.neck: nn.Module = _classic_neck(size.embed_dim, neck_channels)
            width, kernel = neck_channels, 1
        else:
            self.neck = _SimpleNeck()
            width, kernel = size.embed_dim, 3

        k = self.num_keypoints
        out_channels = [k + k * self.tag_dim] + [k] * (len(self.strides) - 1)
        self.out_channels = tuple(out_channels)
        self.final_layers = nn.ModuleList([nn.Conv2d(width, out_channels[0], kernel, padding=kernel // 2)])
        self.deconv_layers = nn.ModuleList()
        feature_channels = [width]
        for i in range(1, len(self.strides)):
            self.deconv_layers.append(
                _deconv_stage(feature_channels[-1] + out_channels[i - 1], branch_channels, num_deconv_blocks)
            )
            self.final_layers.append(nn.Conv2d(branch_channels, out_channels[i], 1))
            feature_channels.append(branch_channels)
        #: SWAHR scale maps, one head per output (as ``HigherHRNet.conv_scale_layers``); absent without SWAHR.
        self.conv_scale_layers: nn.ModuleList | None = None
        if swahr:
            self.conv_scale_layers = nn.ModuleList(_scale_head(c, k) for c in feature_channels)
            self.out_channels = tuple(k + c for c in out_channels)
        self.reset_head_parameters()
        if pretrained is not None:
            self.load_pretrained_backbone(pretrained)

    def reset_head_parameters(self) -> None:
        """Initialise the neck and head as ViTPose's head (``TopdownHeatmapSimpleHead.init_weights``): conv and
        transposed-conv weights ~ N(0, 0.001^2), biases 0, BatchNorm weight 1 and bias 0; the SWAHR scale heads'
        last conv 0 (official SWAHR: the scale maps start at 0). The backbone keeps its own initialisation
        (:meth:`VisionTransformer.reset_parameters`)."""
        for name, m in self.named_modules():
            if name.startswith("backbone"):
                continue
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.conv_scale_layers is not None:
            for head in self.conv_scale_layers:
                nn.init.zeros_(head[-1].weight)
                nn.init.zeros_(head[-1].bias)

    def backbone_state_keys(self) -> list[str]:
        """``state_dict`` keys of the ViT backbone (``backbone.*``)."""
        return [key for key in self.state_dict() if key.startswith("backbone.")]

    def load_pretrained_backbone(self, path: str | os.PathLike[str]) -> tuple[int, int]:
        """Initialise the backbone from a local MAE or ViTPose checkpoint:
        :func:`bottomup.models.weights.load_vit_pretrained` (what is loaded, adapted and skipped, the
        ``(num_loaded, num_skipped)`` it returns and the errors it raises are documented there)."""
        return load_vit_pretrained(self, path)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Run the network.

        Args:
            x: normalised images ``(N, 3, H, W)``, ``H`` and ``W`` multiples of :attr:`input_multiple` (16).

        Returns:
            one tensor per stride: ``(N, out_channels[i], H / s_i, W / s_i)``, e.g. ``[(N, 2K, H/4, W/4),
            (N, K, H/2, W/2)]``; channel layout as ``HigherHRNet.forward``.

        Raises:
            ValueError: ``x`` is not ``(N, 3, H, W)`` with ``H`` and ``W`` multiples of 16.
        """
        m = self.input_multiple
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(
                f"ViTPoseAE expects input of shape (N, 3, H, W) with H and W multiples of {m}, got {tuple(x.shape)}"
            )
        features = self.neck(self.backbone(x))
        return higher_resolution_outputs(features, self.final_layers, self.deconv_layers, self.conv_scale_layers)

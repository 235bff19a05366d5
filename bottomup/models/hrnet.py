"""HRNet backbone and HigherHRNet associative-embedding head.

The module layout (and therefore every ``state_dict`` key and shape) follows the official
HigherHRNet release, so its checkpoints (``pose_higher_hrnet_w32_512.pth``,
``pose_higher_hrnet_w32_640.pth``, ``pose_higher_hrnet_w48_640.pth``) load with ``strict=True``
and no key conversion; with ``swahr=True`` the layout is the official SWAHR release's (its
``pose_higher_hrnet_w32_512.pth`` / ``pose_higher_hrnet_w48_640.pth`` load the same way); the ImageNet HRNet
classification checkpoints
(``hrnet_w32-36af842e.pth``, ``hrnet_w48-8ef0771d.pth``) initialise the backbone.

References:
    * K. Sun, B. Xiao, D. Liu, J. Wang. "Deep High-Resolution Representation Learning for
      Human Pose Estimation". CVPR 2019.
    * B. Cheng, B. Xiao, J. Wang, H. Shi, T. S. Huang, L. Zhang. "HigherHRNet: Scale-Aware
      Representation Learning for Bottom-Up Human Pose Estimation". CVPR 2020.
    * A. Newell, Z. Huang, J. Deng. "Associative Embedding: End-to-End Learning for Joint
      Detection and Grouping". NeurIPS 2017.
    * Z. Luo, Z. Wang, Y. Huang, L. Wang, T. Tan, E. Zhou. "Rethinking the Heatmap Regression for Bottom-up
      Human Pose Estimation" (SWAHR). CVPR 2021; official code ``greatlog/SWAHR-HumanPose``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bottomup.models.weights import PUBLISHED_STEM_CHANNELS, load_official_checkpoint
from bottomup.models.weights import load_pretrained_backbone as _load_pretrained_backbone

__all__ = ["HigherHRNet", "load_official_checkpoint"]  # the loader lives in bottomup.models.weights

#: Top-level submodules that make up the HRNet backbone (shared with the ImageNet classifier).
BACKBONE_PREFIXES: tuple[str, ...] = (
    "conv1",
    "bn1",
    "conv2",
    "bn2",
    "layer1",
    "transition1",
    "stage2",
    "transition2",
    "stage3",
    "transition3",
    "stage4",
)

#: Every input side must be a multiple of this: the lowest-resolution branch is at stride 32.
INPUT_MULTIPLE = 32

# Number of HighResolutionModules in stages 2, 3, 4 (identical for W32 and W48).
_STAGE_MODULES: tuple[int, ...] = (1, 4, 3)
_BLOCKS_PER_BRANCH = 4
#: ``HigherHRNet(init=...)`` choices (``model.init``): see :meth:`HigherHRNet.reset_parameters`.
INIT_SCHEMES: tuple[str, ...] = ("auto", "official", "kaiming")
_BN_MOMENTUM = 0.1


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """``Conv2d`` (no bias) -> ``BatchNorm2d`` [-> ``ReLU``] as a Sequential (keys ``0.*``, ``1.*``)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch, momentum=_BN_MOMENTUM),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Residual block of two 3x3 convolutions (He et al. 2016); channels and resolution preserved."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block with 4x channel expansion (stride 1)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module
        if in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels, momentum=_BN_MOMENTUM),
            )
        else:
            self.downsample = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


def _fuse_path(channels: Sequence[int], src: int, dst: int) -> nn.Module:
    """Map branch ``src`` features onto the resolution and width of branch ``dst``.

    Lower resolution (``src > dst``): 1x1 conv + BN, then nearest upsampling by ``2**(src-dst)``.
    Higher resolution (``src < dst``): ``dst - src`` stride-2 3x3 conv + BN, ReLU between them.
    """
    if src == dst:
        return nn.Identity()
    if src > dst:
        return nn.Sequential(
            nn.Conv2d(channels[src], channels[dst], 1, bias=False),
            nn.BatchNorm2d(channels[dst], momentum=_BN_MOMENTUM),
            nn.Upsample(scale_factor=2 ** (src - dst), mode="nearest"),
        )
    steps = dst - src
    return nn.Sequential(
        *[
            _conv_bn(
                channels[src],
                channels[dst] if k == steps - 1 else channels[src],
                3,
                stride=2,
                relu=k < steps - 1,
            )
            for k in range(steps)
        ]
    )


class HighResolutionModule(nn.Module):
    """Parallel multi-resolution branches followed by all-to-all (sum) fusion.

    Args:
        channels: Width of each branch, highest resolution first; branch ``i`` has stride
            ``2**i`` relative to branch 0.
        num_blocks: ``BasicBlock`` s per branch.
        multi_scale_output: If ``False`` only the highest-resolution fused output is produced.
    """

    def __init__(self, channels: Sequence[int], num_blocks: int, multi_scale_output: bool = True) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(nn.Sequential(*[BasicBlock(c) for _ in range(num_blocks)]) for c in channels)
        num_outputs = n if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_path(channels, j, i) for j in range(n)) for i in range(num_outputs)
        )
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        fused = []
        for paths in self.fuse_layers:
            y = paths[0](xs[0])
            for path, x in zip(paths[1:], xs[1:], strict=True):
                y = y + path(x)
            fused.append(self.relu(y))
        return fused


def _transition(in_channels: Sequence[int], out_channels: Sequence[int]) -> nn.ModuleList:
    """Adapt the branches of one stage to the next and spawn one new, half-resolution branch.

    Existing branches get a 3x3 conv + BN + ReLU only if their width changes (else identity);
    each new branch is a chain of stride-2 3x3 conv + BN + ReLU from the lowest-resolution input.
    """
    layers: list[nn.Module] = []
    n_in = len(in_channels)
    for i, c_out in enumerate(out_channels):
        if i < n_in:
            layers.append(_conv_bn(in_channels[i], c_out, 3) if in_channels[i] != c_out else nn.Identity())
        else:
            steps = i + 1 - n_in
            c_last = in_channels[-1]
            layers.append(
                nn.Sequential(
                    *[_conv_bn(c_last, c_out if k == steps - 1 else c_last, 3, stride=2) for k in range(steps)]
                )
            )
    return nn.ModuleList(layers)


def _deconv_stage(in_channels: int, out_channels: int, num_blocks: int) -> nn.Sequential:
    """2x upsampling: ConvTranspose2d(k=4, s=2, p=1, no bias) + BN + ReLU, then ``num_blocks`` BasicBlocks."""
    up = nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels, momentum=_BN_MOMENTUM),
        nn.ReLU(inplace=True),
    )
    # Each BasicBlock is wrapped in a 1-element Sequential to match the official key layout.
    return nn.Sequential(up, *[nn.Sequential(BasicBlock(out_channels)) for _ in range(num_blocks)])


def _scale_head(in_channels: int, num_keypoints: int) -> nn.Sequential:
    """SWAHR scale head (official ``conv_scale_layers[i]``): 1x1 conv (bias) to K channels + BN + ReLU, then a
    depthwise 9x9 conv (bias, padding 4) giving one scale map per keypoint at the same resolution."""
    k = num_keypoints
    return nn.Sequential(
        nn.Conv2d(in_channels, k, 1),
        nn.BatchNorm2d(k, momentum=_BN_MOMENTUM),
        nn.ReLU(inplace=True),
        nn.Conv2d(k, k, 9, padding=4, groups=k),
    )


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_strides(strides: object) -> tuple[int, ...]:
    msg = (
        "strides must be a non-empty sequence of ints that starts with 4 and halves at each step, "
        f"e.g. (4,) for bottom-up HRNet or (4, 2) for HigherHRNet; got {strides!r}"
    )
    if isinstance(strides, (str, bytes)) or not isinstance(strides, Sequence) or len(strides) == 0:
        raise ValueError(msg)
    out = tuple(strides)
    if any(isinstance(s, bool) or not isinstance(s, int) for s in out) or out[0] != 4:
        raise ValueError(msg)
    for prev, cur in zip(out[:-1], out[1:], strict=True):
        if cur * 2 != prev:
            raise ValueError(msg)
    return out


def higher_resolution_outputs(
    x: torch.Tensor, final_layers: nn.ModuleList, deconv_layers: nn.ModuleList, conv_scale_layers: nn.ModuleList | None
) -> list[torch.Tensor]:
    """The HigherHRNet head on stride-4 features ``x (N, C, H/4, W/4)``: ``final_layers[0](x)``, then for each further
    stride the features and the previous output concatenated, ``deconv_layers[i - 1]`` (2x up) and ``final_layers[i]``;
    with SWAHR (``conv_scale_layers``) each output gets the scale maps of its features in front (official layout).
    Shared by :class:`HigherHRNet` and ``bottomup.models.vit.ViTPoseAE``."""
    y = final_layers[0](x)
    features, outputs = [x], [y]
    for deconv, final in zip(deconv_layers, final_layers[1:], strict=True):
        x = deconv(torch.cat((x, y), dim=1))  # the previous heatmaps (+ tags), never the scale maps
        y = final(x)
        features.append(x)
        outputs.append(y)
    if conv_scale_layers is None:
        return outputs
    return [torch.cat((head(f), o), dim=1) for head, f, o in zip(conv_scale_layers, features, outputs, strict=True)]


class HigherHRNet(nn.Module):
    """HRNet backbone with a HigherHRNet (associative embedding) head.

    The backbone is HRNet-W\\ ``width`` (Sun et al. 2019): a stride-4 stem (two stride-2 3x3
    convs + 4 Bottlenecks), then stages 2-4 with 2, 3, 4 parallel branches of widths
    ``width * [1, 2, 4, 8]`` at strides 4, 8, 16, 32 (1, 4, 3 modules of 4 BasicBlocks per
    branch), repeatedly fused. The stride-4 branch feeds the head (Cheng et al. 2020):

    * stride 4: a 1x1 conv giving ``K + K * tag_dim`` maps, channels ``[0, K)`` are keypoint
      heatmaps and ``[K, K + K * tag_dim)`` are associative-embedding tag maps (joint ``k``,
      tag dimension ``d`` at channel ``K + k * tag_dim + d``);
    * each further stride (``strides=(4, 2)`` for HigherHRNet): the previous features are
      concatenated with the previous output, upsampled 2x by ConvTranspose2d(k=4, s=2, p=1)
      + BN + ReLU, refined by ``num_deconv_blocks`` BasicBlocks, and a 1x1 conv gives ``K``
      heatmaps (no tags).

    ``strides=(4,)`` is the "bottom-up HRNet" baseline (single stride-4 output, no deconv).

    ``swahr=True`` (SWAHR, Luo et al. 2021) adds one scale head per output (``conv_scale_layers[i]``: 1x1 conv to
    K channels + BN + ReLU + depthwise 9x9 conv, last conv initialised to 0) on the features that output is
    computed from, and puts its K scale maps in front: ``[scales K, heatmaps K, tags K * tag_dim]`` at stride 4,
    ``[scales K, heatmaps K]`` after. The deconvolution still sees only the heatmaps and tags, so every other weight
    and output is HigherHRNet's; test time drops the scale maps
    (``bottomup.engine.inference.network_forward``).
    Module names and ``state_dict`` keys/shapes are exactly those of the official HigherHRNet
    checkpoints (``width=32`` or ``48``, ``num_keypoints=17``, ``strides=(4, 2)``, ``tag_dim=1``).

    Args:
        width: Width ``C`` of the highest-resolution branch (32 for W32, 48 for W48; any
            positive int is accepted, branch widths are ``C * [1, 2, 4, 8]``).
        num_keypoints: Number of keypoint types ``K`` (17 for COCO, 14 for CrowdPose).
        strides: Output strides, highest first. Must start with 4 and halve at each step.
        tag_dim: Tag embedding dimension per keypoint (1 in the paper).
        num_deconv_blocks: BasicBlocks after each deconvolution.
        pretrained: Optional local path to an ImageNet HRNet classification checkpoint
            (e.g. ``hrnet_w32-36af842e.pth``) used to initialise the backbone; the classifier
            keys (``incre_modules``, ``downsamp_modules``, ``final_layer``, ``classifier``) are
            ignored. Nothing is ever downloaded.
        stage_modules: HighResolutionModules in stages 2, 3, 4: ``(1, 4, 3)`` for the published
            models; fewer make a faster, smaller variant (the CPU quickstart) whose weights no
            longer fit official checkpoints.
        blocks_per_branch: BasicBlocks per branch in each module (4 in the published models).
        stem_blocks: Bottlenecks in ``layer1`` after the stem (4 in the published models). At small widths they
            are most of the cost (~55 % of a W16 training step); fewer make a faster variant whose ``layer1``
            keys beyond the first ``stem_blocks`` are absent from its checkpoints.
        stem_channels: channels of the two stride-2 stem convolutions and of the ``layer1`` Bottlenecks' inner
            convolutions (their output is ``4 x stem_channels``; 64 in the published models and the ImageNet
            backbones). With ``stem_channels`` 64, the stem, ``layer1`` and ``transition1`` were 42 % of a W16
            training step at 160 px (forward + backward); 32 makes a faster variant (the CPU quickstart) whose stem
            tensors no longer fit the official checkpoints.
        init: weight initialisation, one of :data:`INIT_SCHEMES`: ``"official"`` (N(0, 0.001^2), the official
            code's, for a backbone loaded from ``pretrained``), ``"kaiming"`` (training from scratch) or
            ``"auto"``: official with ``pretrained``, kaiming without; see :meth:`reset_parameters`.
        swahr: add the SWAHR scale heads and output layout (official SWAHR ``state_dict`` keys and shapes).

    Attributes:
        strides (tuple[int, ...]): Output strides, e.g. ``(4, 2)``.
        num_keypoints (int): ``K``.
        tag_dim (int): Tag dimension per keypoint.
        width (int): ``C``.
        out_channels (tuple[int, ...]): Channels of each output, e.g. ``(2K, K)`` (SWAHR: ``(3K, 2K)``).
        swahr (bool): whether the outputs start with K SWAHR scale maps.

    Raises:
        ValueError: If an argument is invalid (non-positive ``width``/``num_keypoints``/
            ``tag_dim``, negative ``num_deconv_blocks``, bad ``strides``), or if ``pretrained``
            does not match the backbone (see :meth:`load_pretrained_backbone`), or
            ``stage_modules`` / ``blocks_per_branch`` / ``stem_blocks`` / ``stem_channels`` are not positive.
        FileNotFoundError: If ``pretrained`` is given but does not exist.

    Example:
        >>> model = HigherHRNet(width=32).eval()
        >>> [o.shape for o in model(torch.zeros(1, 3, 512, 512))]
        [torch.Size([1, 34, 128, 128]), torch.Size([1, 17, 256, 256])]
    """

    def __init__(
        self,
        width: int = 32,
        num_keypoints: int = 17,
        strides: Sequence[int] = (4, 2),
        tag_dim: int = 1,
        num_deconv_blocks: int = 4,
        pretrained: str | os.PathLike[str] | None = None,
        stage_modules: Sequence[int] = _STAGE_MODULES,
        blocks_per_branch: int = _BLOCKS_PER_BRANCH,
        stem_blocks: int = 4,
        stem_channels: int = PUBLISHED_STEM_CHANNELS,
        init: str = "auto",
        swahr: bool = False,
    ) -> None:
        super().__init__()
        if init not in INIT_SCHEMES:
            raise ValueError(f"model.init={init!r} is not one of {', '.join(INIT_SCHEMES)}")
        self.init = ("official" if pretrained is not None else "kaiming") if init == "auto" else init
        self.width = _check_int("width", width, 1)
        self.num_keypoints = _check_int("num_keypoints", num_keypoints, 1)
        self.tag_dim = _check_int("tag_dim", tag_dim, 1)
        num_deconv_blocks = _check_int("num_deconv_blocks", num_deconv_blocks, 0)
        blocks_per_branch = _check_int("blocks_per_branch", blocks_per_branch, 1)
        stem_blocks = _check_int("stem_blocks", stem_blocks, 1)
        stem = _check_int("stem_channels", stem_channels, 1)
        if len(stage_modules) != len(_STAGE_MODULES):
            raise ValueError(
                f"stage_modules must give {len(_STAGE_MODULES)} module counts (stages 2, 3, 4), got {list(stage_modules)}"
            )
        stage_modules = tuple(_check_int(f"stage_modules[{i}]", m, 1) for i, m in enumerate(stage_modules))
        self.strides = _check_strides(strides)
        if not isinstance(swahr, bool):
            raise ValueError(f"model.swahr must be true or false, got {swahr!r}")
        self.swahr = swahr

        # Stem: two stride-2 3x3 convs (stride 4 overall), then stem_blocks (published: 4) Bottlenecks -> 4 x
        # stem_channels (published: 256) channels.
        self.conv1 = nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(stem, stem, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        stem_out = stem * Bottleneck.expansion
        self.layer1 = nn.Sequential(
            Bottleneck(stem, stem),
            *[Bottleneck(stem_out, stem) for _ in range(stem_blocks - 1)],
        )

        # Stages 2-4: 2, 3, 4 branches.
        widths = [width * 2**i for i in range(4)]
        prev: list[int] = [stem_out]
        for s, num_modules in enumerate(stage_modules):
            chans = widths[: s + 2]
            last_stage = s == len(stage_modules) - 1
            self.add_module(f"transition{s + 1}", _transition(prev, chans))
            modules = [
                HighResolutionModule(
                    chans, blocks_per_branch, multi_scale_output=not (last_stage and m == num_modules - 1)
                )
                for m in range(num_modules)
            ]
            self.add_module(f"stage{s + 2}", nn.Sequential(*modules))
            prev = chans

        # Head.
        k = self.num_keypoints
        out_channels = [k + k * self.tag_dim] + [k] * (len(self.strides) - 1)
        self.out_channels = tuple(out_channels)
        self.final_layers = nn.ModuleList([nn.Conv2d(width, out_channels[0], 1)])
        self.deconv_layers = nn.ModuleList()
        for i in range(1, len(self.strides)):
            self.deconv_layers.append(_deconv_stage(width + out_channels[i - 1], width, num_deconv_blocks))
            self.final_layers.append(nn.Conv2d(width, out_channels[i], 1))
        #: SWAHR scale maps, one head per output (official ``conv_scale_layers``); absent for HigherHRNet.
        self.conv_scale_layers: nn.ModuleList | None = None
        if swahr:
            self.conv_scale_layers = nn.ModuleList(_scale_head(width, k) for _ in self.strides)
            self.out_channels = tuple(k + c for c in out_channels)

        self.reset_parameters()
        if pretrained is not None:
            self.load_pretrained_backbone(pretrained)

    transition1: nn.ModuleList
    transition2: nn.ModuleList
    transition3: nn.ModuleList
    stage2: nn.Sequential
    stage3: nn.Sequential
    stage4: nn.Sequential

    def reset_parameters(self) -> None:
        """Initialise every weight by ``self.init`` (see :data:`INIT_SCHEMES`).

        ``"official"`` (official HigherHRNet ``init_weights``): conv / deconv weights ~ N(0, 0.001^2), biases 0,
        BatchNorm weight 1, bias 0. Meant to be overwritten by an ImageNet backbone (``model.pretrained``); from
        scratch, Adam's step (~lr per weight) is then ~lr / 0.001 relative to each weight, so early training is
        a large random walk whose outcome swings with rounding.

        ``"kaiming"`` (for training from scratch; He et al. 2015, torchvision ResNet with
        ``zero_init_residual``): conv / deconv weights ~ N(0, 2 / fan_out), the last BatchNorm of every residual
        block scaled to 0 (each block starts as the identity), BatchNorm elsewhere weight 1, bias 0. The output
        convs (``final_layers``) keep N(0, 0.001^2) in both schemes, so the first heatmaps and tags are ~0.
        """
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                if self.init == "kaiming":
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.init == "kaiming":
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
                elif isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
            for m in self.final_layers:
                nn.init.normal_(m.weight, std=0.001)
        if self.conv_scale_layers is not None:  # official: scale maps start at 0 (the plain Gaussian target)
            for head in self.conv_scale_layers:
                nn.init.zeros_(head[-1].weight)
                nn.init.zeros_(head[-1].bias)

    def backbone_state_keys(self) -> list[str]:
        """``state_dict`` keys that belong to the HRNet backbone (everything but the head)."""
        return [key for key in self.state_dict() if key.split(".", 1)[0] in BACKBONE_PREFIXES]

    def load_pretrained_backbone(self, path: str | os.PathLike[str]) -> tuple[int, int]:
        """Initialise the backbone from a local ImageNet HRNet classification checkpoint: this network's
        :func:`bottomup.models.weights.load_pretrained_backbone` (what is loaded and skipped, the wrappers accepted,
        the ``(num_loaded, num_skipped)`` it returns and the errors it raises are documented there)."""
        return _load_pretrained_backbone(self, path)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Run the network.

        Args:
            x: Normalised images, shape ``(N, 3, H, W)`` with ``H`` and ``W`` multiples of 32.

        Returns:
            One tensor per entry of :attr:`strides`: ``(N, out_channels[i], H / s_i, W / s_i)``,
            e.g. ``[(N, 2K, H/4, W/4), (N, K, H/2, W/2)]`` for HigherHRNet with ``tag_dim=1``.
            In the first output, channels ``[0, K)`` are heatmaps and the next ``K * tag_dim``
            are tag maps; later outputs are heatmaps only. With ``swahr`` every output starts with K scale
            maps (unbounded; the loss keeps them near 0), then the channels above.

        Raises:
            ValueError: If ``x`` is not ``(N, 3, H, W)`` with ``H`` and ``W`` multiples of 32.
        """
        m = INPUT_MULTIPLE
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(
                f"HigherHRNet expects input of shape (N, 3, H, W) with H and W multiples of {m}, got {tuple(x.shape)}"
            )
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        feats = [self.layer1(x)]
        for transition, stage in (
            (self.transition1, self.stage2),
            (self.transition2, self.stage3),
            (self.transition3, self.stage4),
        ):
            # Existing branches pass through (maybe re-widened); new ones come from the lowest resolution.
            feats = [t(feats[i] if i < len(feats) else feats[-1]) for i, t in enumerate(transition)]
            feats = stage(feats)

        return higher_resolution_outputs(feats[0], self.final_layers, self.deconv_layers, self.conv_scale_layers)

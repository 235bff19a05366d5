"""Checkpoints -> state dicts: the one place that reads weights and the architecture they describe.

Everything here works on tensors and plain mappings (no config): the layer above (``bottomup.build``) reads a
file with the weights-only loader, decides which config builds the network, and calls these functions for every
tensor-level step.

Layouts understood (keys and shapes are the official HigherHRNet / SWAHR releases', see
``bottomup.models.hrnet.HigherHRNet``):

* an official HigherHRNet / SWAHR ``.pth``: a raw ``state_dict`` or ``{"state_dict": ..., "epoch": ...}``;
* a checkpoint of this project (``last.pt`` / ``best.pt``): ``{"model": state_dict, "config": ..., ...}``;
* an MMPose 0.x associative-embedding checkpoint (HigherHRNet-W32 / W48 with ``AEHigherResolutionHead``, HRNet-W32 /
  W48 with ``AESimpleHead``): an mmcv ``{"meta": {...}, "state_dict": ...}`` whose keys start with ``backbone.`` /
  ``keypoint_head.`` (:func:`convert_mmpose_state_dict` renames them; :data:`MMPOSE_LAYOUT`);
* an ImageNet HRNet classification checkpoint (its backbone part, :func:`load_pretrained_backbone`);

each with keys possibly prefixed by ``module.`` (DataParallel / DDP) and / or ``_orig_mod.`` (``torch.compile``).
A later layout (e.g. another toolbox's checkpoints) is one more branch of :func:`unwrap_state_dict` plus a key
mapping. Files are read by :func:`load_weights_file`: ``torch.load(weights_only=True)`` that also accepts the NumPy
numbers and arrays an mmcv ``meta`` may hold, and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from bottomup.models.hrnet import HigherHRNet
    from bottomup.models.vit import ViTPoseAE

__all__ = [
    "WRAPPER_PREFIXES",
    "HEAD_PREFIXES",
    "MMPOSE_LAYOUT",
    "OFFICIAL_LAYOUT",
    "Architecture",
    "StateMatch",
    "numpy_safe_globals",
    "allow_numpy_values",
    "load_weights_file",
    "is_project_checkpoint",
    "is_mmpose_state_dict",
    "is_mmpose_checkpoint",
    "convert_mmpose_state_dict",
    "weights_layout",
    "holds_weights",
    "strip_wrapper_prefixes",
    "unwrap_state_dict",
    "read_architecture",
    "has_scale_heads",
    "describe_weights",
    "match_state_dict",
    "match_for_finetuning",
    "mismatch_summary",
    "load_official_checkpoint",
    "load_pretrained_backbone",
    "VIT_LAYOUT",
    "MAE_LAYOUT",
    "is_vit_state_dict",
    "vit_backbone_state",
    "adapt_vit_backbone_state",
    "load_vit_pretrained",
]

# The messages of the HigherHRNet loaders have always been logged under this name (log filters keep working).
logger = logging.getLogger("bottomup.models.hrnet")

#: Key prefixes that wrappers add to every key of a model's ``state_dict``: DataParallel / DDP (``module.``) and
#: ``torch.compile`` (``_orig_mod.``); :func:`strip_wrapper_prefixes` removes them.
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")

#: ``state_dict`` prefixes of the prediction head: tensors here whose shape depends on K (the data set's keypoints);
#: ``conv_scale_layers`` are the SWAHR scale heads (absent from HigherHRNet checkpoints: a SWAHR model fine-tuned
#: from one starts them fresh, at the official zero output).
HEAD_PREFIXES: tuple[str, ...] = ("final_layers.", "deconv_layers.", "conv_scale_layers.")

_SCALE_PREFIX = "conv_scale_layers."
_WIDTH_KEY = "transition1.0.0.weight"  # 3x3 conv from the 256-channel stem to branch 0: (width, 256, 3, 3)
#: Channels of the stem convolutions and ``layer1``'s inner convolutions in the published HigherHRNet / SWAHR
#: checkpoints and the ImageNet HRNet backbones (``HigherHRNet(stem_channels=...)`` defaults to it).
PUBLISHED_STEM_CHANNELS = 64

#: Layout names (:func:`weights_layout`, :attr:`Architecture.layout`, messages): the official HigherHRNet / SWAHR
#: key names, which this project's checkpoints share, and MMPose 0.x's (``backbone.`` / ``keypoint_head.``).
OFFICIAL_LAYOUT = "HigherHRNet"
MMPOSE_LAYOUT = "MMPose 0.x"
_MMPOSE_BACKBONE, _MMPOSE_HEAD = "backbone.", "keypoint_head."

#: NumPy dtypes whose scalars and arrays :func:`load_weights_file` accepts (numbers and booleans only).
_NUMPY_TYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
_NUMPY_TYPES += (np.float16, np.float32, np.float64)


# --------------------------------------------------------------------------------------- reading files
def numpy_safe_globals() -> list[Any]:
    """The NumPy globals :func:`load_weights_file` lets ``torch.load(weights_only=True)`` rebuild, and only those:
    NumPy scalars (``numpy.float64(0.71)``, e.g. a best score an mmcv hook kept in ``meta``) and arrays of booleans,
    integers and floats (``numpy._core.multiarray.scalar`` / ``_reconstruct``, ``numpy.ndarray``, ``numpy.dtype``
    and the dtype classes of :data:`_NUMPY_TYPES`), also under the ``numpy.core.multiarray`` names that files
    pickled with NumPy 1 (every MMPose 0.x release) use. Object, string and structured dtypes stay refused (their
    dtype classes are not listed), and so does every other global.

    Returns:
        entries for ``torch.serialization.safe_globals``: objects, and ``(object, name)`` pairs for the other
        NumPy's names where PyTorch accepts them (2.6 and later).
    """
    try:
        from numpy._core import multiarray  # NumPy >= 1.26
    except ImportError:  # pragma: no cover - older NumPy
        from numpy.core import multiarray  # type: ignore[no-redef]
    functions = [multiarray.scalar, multiarray._reconstruct]
    out: list[Any] = [*functions, np.ndarray, np.dtype, *(type(np.dtype(t)) for t in _NUMPY_TYPES)]
    if torch.torch_version.TorchVersion(torch.__version__) >= "2.6":  # (object, "module.name") pairs
        for fn in functions:
            for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
                if fn.__module__ != module:
                    out.append((fn, f"{module}.{fn.__name__}"))
    return out


@contextlib.contextmanager
def allow_numpy_values() -> Iterator[None]:
    """A scope in which ``torch.load(weights_only=True)`` also rebuilds the NumPy numbers and arrays of
    :func:`numpy_safe_globals` (``torch.serialization.safe_globals``; PyTorch 2.4, which lacks it: the allow-list
    is extended and put back as it was on exit).

    The allow-list is process-wide while the scope lasts (PyTorch keeps one list): a load in another thread
    meanwhile accepts the same NumPy values.
    """
    serialization = torch.serialization
    scope = getattr(serialization, "safe_globals", None)
    if scope is not None:
        with scope(numpy_safe_globals()):
            yield
        return
    before = serialization.get_safe_globals()  # pragma: no cover - PyTorch 2.4
    serialization.add_safe_globals(numpy_safe_globals())  # pragma: no cover
    try:  # pragma: no cover
        yield
    finally:  # pragma: no cover
        serialization.clear_safe_globals()
        serialization.add_safe_globals(before)


def load_weights_file(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Any:
    """Read a checkpoint file with ``torch.load(weights_only=True)`` (never runs code from the file), NumPy numbers
    and arrays allowed (:func:`allow_numpy_values`): an mmcv checkpoint's ``meta`` (MMPose 0.x) may hold them.

    Raises:
        whatever ``torch.load`` raises: ``FileNotFoundError``, ``pickle.UnpicklingError`` for files holding other
        objects (the callers put the file name into the message), ``RuntimeError`` for corrupt files.
    """
    with allow_numpy_values():
        return torch.load(path, map_location=map_location, weights_only=True)


# --------------------------------------------------------------------------------------- MMPose 0.x
def is_mmpose_state_dict(state: Mapping[str, Any]) -> bool:
    """Whether a ``state_dict`` (wrapper prefixes stripped) has MMPose 0.x names: every key starts with
    ``backbone.`` or ``keypoint_head.``, and some with ``backbone.`` (``AssociativeEmbedding`` in
    mmpose/models/detectors/associative_embedding.py holds its ``backbone`` and ``keypoint_head`` modules)."""
    return (
        bool(state)
        and all(k.startswith((_MMPOSE_BACKBONE, _MMPOSE_HEAD)) for k in state)
        and any(k.startswith(_MMPOSE_BACKBONE) for k in state)
        and not is_vit_state_dict(state)  # a ViTPose checkpoint: the same prefixes, no HigherHRNet inside
    )


def is_mmpose_checkpoint(obj: Any) -> bool:
    """Whether a loaded file is an MMPose 0.x checkpoint as mmcv 1.x ``save_checkpoint`` writes it: a mapping with
    a ``state_dict`` in MMPose names (:func:`is_mmpose_state_dict`, after the wrapper prefixes); ``meta`` (mmcv /
    MMPose versions, time, the config text, ...) and ``optimizer`` may be there and are not read."""
    return (
        isinstance(obj, Mapping)
        and isinstance(obj.get("state_dict"), Mapping)
        and is_mmpose_state_dict(strip_wrapper_prefixes(obj["state_dict"]))
    )


def convert_mmpose_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """MMPose 0.x key names -> this project's (the official HigherHRNet's); a rename only: the values are the
    same objects, in the same order.

    * ``backbone.<key>`` -> ``<key>``: MMPose's ``HRNet`` (mmpose/models/backbones/hrnet.py) names its modules as
      the official HigherHRNet (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``layer1``, ``transition1``, ``stage2``, ...).
    * ``AEHigherResolutionHead`` (mmpose/models/heads/ae_higher_resolution_head.py; HigherHRNet):
      ``keypoint_head.final_layers.<i>.*`` / ``keypoint_head.deconv_layers.<i>.*`` -> ``final_layers.<i>.*`` /
      ``deconv_layers.<i>.*`` (the official head's module lists, BasicBlocks in one-element Sequentials as there).
    * ``AESimpleHead`` (mmpose/models/heads/ae_simple_head.py, a ``DeconvHead`` of deconv_head.py; the bottom-up HRNet
      with ``num_deconv_layers=0``: one 1x1 conv): ``keypoint_head.final_layer.weight`` / ``.bias`` ->
      ``final_layers.0.weight`` / ``.bias``.
    * Any other ``keypoint_head.`` key (an ``AESimpleHead`` with deconvolutions or extra convs, another head) keeps
      its name, so that loading reports it as an unexpected key. Keys without either prefix are kept.
    """
    head = [k[len(_MMPOSE_HEAD) :] for k in state if k.startswith(_MMPOSE_HEAD)]
    higher = any(k.startswith("final_layers.") for k in head)
    out: dict[str, Any] = {}
    for key, value in state.items():
        name = key
        if key.startswith(_MMPOSE_BACKBONE):
            name = key[len(_MMPOSE_BACKBONE) :]
        elif key.startswith(_MMPOSE_HEAD):
            rest = key[len(_MMPOSE_HEAD) :]
            if higher and rest.startswith(("final_layers.", "deconv_layers.")):
                name = rest
            elif not higher and rest in ("final_layer.weight", "final_layer.bias"):
                name = "final_layers.0." + rest.rsplit(".", 1)[1]
        out[name] = value
    return out


def weights_layout(obj: Any) -> str:
    """The key names of a loaded file or ``state_dict``: :data:`MMPOSE_LAYOUT` for an MMPose 0.x checkpoint or
    state_dict, :data:`VIT_LAYOUT` for a ViTPose (top-down) release (a ViT under ``backbone.`` with a
    ``keypoint_head.``), else :data:`OFFICIAL_LAYOUT` (official HigherHRNet / SWAHR names, which this project's
    checkpoints share, ``ViTPoseAE``'s included)."""
    if isinstance(obj, Mapping) and not is_project_checkpoint(obj):
        state = obj["state_dict"] if isinstance(obj.get("state_dict"), Mapping) else obj
        state = strip_wrapper_prefixes(state)
        if is_mmpose_state_dict(state):
            return MMPOSE_LAYOUT
        if is_vit_state_dict(state) and any(k.startswith(_MMPOSE_HEAD) for k in state):
            return VIT_LAYOUT
    return OFFICIAL_LAYOUT


# --------------------------------------------------------------------------------------- unwrapping
def is_project_checkpoint(obj: Any) -> bool:
    """Whether a loaded file is a checkpoint of this project (``{"model": state_dict, "config", ...}``), as
    opposed to a raw / ``{"state_dict": ...}`` official HigherHRNet checkpoint."""
    return isinstance(obj, dict) and isinstance(obj.get("model"), dict) and ("config" in obj or "epoch" in obj)


def holds_weights(obj: Any) -> bool:
    """Whether a loaded file holds weights :func:`unwrap_state_dict` finds: a project checkpoint, a
    ``{"state_dict": dict}`` or a non-empty dict whose values are all tensors."""
    if is_project_checkpoint(obj):
        return True
    if not isinstance(obj, dict):
        return False
    if isinstance(obj.get("state_dict"), dict):
        return True
    return bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def strip_wrapper_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``state`` without the :data:`WRAPPER_PREFIXES` that *every* key carries, repeatedly (so
    ``module._orig_mod.`` and ``_orig_mod.module.`` go too); keys keep their order. A prefix only some keys have
    is kept (it is then part of the names)."""
    out = dict(state)
    while out:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in out)), None)
        if prefix is None:
            break
        out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def unwrap_state_dict(obj: object) -> dict[str, Tensor]:
    """The ``state_dict`` inside a loaded checkpoint: a project checkpoint's ``model``
    (:func:`is_project_checkpoint`), else the ``state_dict`` mapping of an official or MMPose training checkpoint,
    else the mapping itself; :func:`strip_wrapper_prefixes` applied, then MMPose 0.x names converted
    (:func:`convert_mmpose_state_dict`, when :func:`is_mmpose_state_dict`). Always a new dict (the checkpoint is
    not changed).

    Values are not checked: see :func:`holds_weights` to refuse files without tensors.

    Raises:
        ValueError: ``obj`` (or its ``state_dict``) is not a mapping.
    """
    if is_project_checkpoint(obj):
        obj = obj["model"]  # type: ignore[index]
    elif isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"Expected a state_dict (mapping of name -> tensor), got {type(obj).__name__}")
    state = strip_wrapper_prefixes(obj)
    return convert_mmpose_state_dict(state) if is_mmpose_state_dict(state) else state


# --------------------------------------------------------------------------------------- architecture
@dataclass(frozen=True)
class Architecture:
    """A HigherHRNet as its ``state_dict`` describes it (:func:`read_architecture`); the fields are the
    arguments of ``HigherHRNet`` (the ``model`` config group), ``None`` where the tensors do not tell.

    Attributes:
        width: ``C``, the channels of the stride-4 branch (``transition1.0.0.weight``: ``(C, 256, 3, 3)``).
        out_channels: output channels of ``final_layers.0``, ``final_layers.1``, ... (``(K + K * tag_dim, K, ...)``;
            SWAHR scale maps not included).
        strides: ``(4, 2, ...)``, one per output.
        num_keypoints: ``K``: the SWAHR scale heads' or the second output's channels; with one output and no
            scale heads ``tag_dim`` is taken as 1 (every published model's), ``None`` if that does not divide.
        tag_dim: tag channels per keypoint (``None`` as ``num_keypoints``).
        num_deconv_blocks: BasicBlocks after each deconvolution (``None`` with one output: no deconvolution).
        stage_modules: HighResolutionModules in stages 2, 3, 4 (``None`` if a stage is absent).
        blocks_per_branch: BasicBlocks per branch (of ``stage2.0``; ``None`` if absent).
        stem_blocks: Bottlenecks in ``layer1`` (``None`` if absent).
        stem_channels: output channels of the stem's first convolution (``conv1.weight``: ``(S, 3, 3, 3)``; 64 in
            the published models; ``None`` if absent).
        swahr: whether there are SWAHR scale heads (``conv_scale_layers``).
        layout: the key names the tensors came with: :data:`OFFICIAL_LAYOUT` (``"HigherHRNet"``: the official
            HigherHRNet / SWAHR names, this project's too) or :data:`MMPOSE_LAYOUT` (``"MMPose 0.x"``, converted by
            :func:`convert_mmpose_state_dict`); not a ``HigherHRNet`` argument.
    """

    width: int
    out_channels: tuple[int, ...]
    strides: tuple[int, ...]
    num_keypoints: int | None
    tag_dim: int | None
    num_deconv_blocks: int | None
    stage_modules: tuple[int, ...] | None
    blocks_per_branch: int | None
    stem_blocks: int | None
    swahr: bool
    layout: str = OFFICIAL_LAYOUT
    stem_channels: int | None = None

    def model_kwargs(self) -> dict[str, Any]:
        """The known fields as ``HigherHRNet`` keyword arguments (``stage_modules`` / ``strides`` as lists, as in
        a config); unknown (``None``) ones are left out, so the model's defaults apply to them."""
        names = ("width", "num_keypoints", "strides", "tag_dim", "num_deconv_blocks", "stage_modules")
        names += ("blocks_per_branch", "stem_blocks", "stem_channels", "swahr")
        out = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _count(state: Mapping[str, Any], pattern: str, start: int = 0) -> int:
    """How many consecutive ``pattern.format(i)`` keys, ``i = start, start + 1, ...``, are in ``state``."""
    i = start
    while pattern.format(i) in state:
        i += 1
    return i - start


def _channels(state: Mapping[str, Any], key: str) -> int:
    return int(state[key].shape[0])


def has_scale_heads(state: Mapping[str, Any]) -> bool:
    """Whether a ``state_dict`` has SWAHR scale heads (``conv_scale_layers.*``)."""
    return any(k.startswith(_SCALE_PREFIX) for k in state)


def read_architecture(state: Mapping[str, Any]) -> Architecture | None:
    """The HigherHRNet that ``state`` (an unwrapped ``state_dict``: names -> tensors) is the weights of, read
    from its key names and the shapes of a few tensors (values need a ``.shape``). MMPose 0.x names
    (:func:`is_mmpose_state_dict`) are read through :func:`convert_mmpose_state_dict` (``layout`` says so).

    Returns:
        the :class:`Architecture`, or ``None`` when ``state`` is not a HigherHRNet's: no
        ``transition1.0.0.weight`` (the width) or no ``final_layers.0.weight`` (the outputs).
    """
    layout = OFFICIAL_LAYOUT
    if is_mmpose_state_dict(state):
        state, layout = convert_mmpose_state_dict(state), MMPOSE_LAYOUT
    if _WIDTH_KEY not in state or "final_layers.0.weight" not in state:
        return None
    out = tuple(_channels(state, f"final_layers.{i}.weight") for i in range(_count(state, "final_layers.{}.weight")))
    swahr = has_scale_heads(state)
    if swahr and "conv_scale_layers.0.0.weight" in state:
        k: int | None = _channels(state, "conv_scale_layers.0.0.weight")
    elif len(out) > 1:
        k = out[1]
    else:
        k = out[0] // 2 if out[0] % 2 == 0 else None  # tag_dim 1: K heatmaps + K tags
    tag_dim = out[0] // k - 1 if k and out[0] % k == 0 and out[0] > k else None
    stages = tuple(_count(state, f"stage{s}.{{}}.branches.0.0.conv1.weight") for s in (2, 3, 4))
    blocks = _count(state, "stage2.0.branches.0.{}.conv1.weight")
    stem = _count(state, "layer1.{}.conv1.weight")
    return Architecture(
        width=_channels(state, _WIDTH_KEY),
        out_channels=out,
        strides=tuple(4 >> i for i in range(len(out))),
        num_keypoints=k,
        tag_dim=tag_dim,
        num_deconv_blocks=_count(state, "deconv_layers.0.{}.0.conv1.weight", 1) if len(out) > 1 else None,
        stage_modules=stages if all(stages) else None,
        blocks_per_branch=blocks or None,
        stem_blocks=stem or None,
        swahr=swahr,
        layout=layout,
        stem_channels=_channels(state, "conv1.weight") if "conv1.weight" in state else None,
    )


def describe_weights(state: Mapping[str, Any], layout: str | None = None) -> str:
    """``"W32, K=17"``-style summary of a HigherHRNet state_dict (:func:`read_architecture`: width, K from the
    last output; ``"W32, 34 output channels"`` with one output; ``", SWAHR"`` with scale heads;
    ``", MMPose 0.x layout"`` for MMPose names; ``"W16 (stem 32), K=17"`` when the stem is not the published
    64 channels), ``"ViT-base (embed_dim 768, depth 12), K=17"``-style for a
    ``ViTPoseAE`` / ViT checkpoint (``"ViT-base (...) backbone"`` without an associative-embedding head), or
    ``"not a HigherHRNet"``; for messages about weights that do not fit a model.

    Args:
        state: the ``state_dict`` (official, project or MMPose 0.x names).
        layout: the file's layout when ``state`` was already converted (:func:`weights_layout` of the loaded
            file); by default the one ``state``'s names show.
    """
    arch = read_architecture(state)
    if arch is None:
        vit = _describe_vit(state)
        if vit is not None:
            return vit + (f", {layout} layout" if layout and layout != OFFICIAL_LAYOUT else "")
        return "not a HigherHRNet" + (f" ({layout} layout)" if layout and layout != OFFICIAL_LAYOUT else "")
    last = arch.out_channels[-1]
    swahr = ", SWAHR" if arch.swahr else ""
    layout = layout or arch.layout
    named = f", {layout} layout" if layout != OFFICIAL_LAYOUT else ""
    outputs = f"K={last}" if len(arch.out_channels) > 1 else f"{last} output channels"
    stem = f" (stem {arch.stem_channels})" if arch.stem_channels not in (None, PUBLISHED_STEM_CHANNELS) else ""
    return f"W{arch.width}{stem}, {outputs}{swahr}{named}"


def _describe_vit(state: Mapping[str, Any]) -> str | None:
    """``describe_weights`` of a ViT state_dict (``ViTPoseAE``, a ViTPose release or MAE), ``None`` for others."""
    if not is_vit_state_dict(state):
        return None
    prefix = "" if _VIT_PATCH_KEY in state else _MMPOSE_BACKBONE
    embed_dim = int(state[prefix + _VIT_PATCH_KEY].shape[0])
    depth = _count(state, prefix + "blocks.{}.norm1.weight")
    size = _VIT_NAMES.get((embed_dim, depth), "custom")
    text = f"ViT-{size} (embed_dim {embed_dim}, depth {depth})"
    if "final_layers.0.weight" not in state:
        return text + " backbone"
    out = [_channels(state, f"final_layers.{i}.weight") for i in range(_count(state, "final_layers.{}.weight"))]
    swahr = ", SWAHR" if has_scale_heads(state) else ""
    outputs = f"K={out[-1]}" if len(out) > 1 else f"{out[0]} output channels"
    return f"{text}, {outputs}{swahr}"


# --------------------------------------------------------------------------------------- state dict vs model
@dataclass(frozen=True)
class StateMatch:
    """A ``state_dict`` (the file's) against a model's (:func:`match_state_dict`), by name and shape.

    Attributes:
        fits: model keys the file has with the same shape (model order).
        missing: model keys the file lacks (model order).
        mismatched: model key -> ``(shape in the file, shape in the model)`` where they differ (model order).
        unexpected: file keys the model lacks (file order).
        unfit: ``missing`` and ``mismatched`` keys together, in model order.
    """

    fits: list[str]
    missing: list[str]
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
    unexpected: list[str]
    unfit: list[str]

    @property
    def exact(self) -> bool:
        """Whether every key fits both ways (``load_state_dict(strict=True)`` would succeed)."""
        return not (self.missing or self.mismatched or self.unexpected)


def match_state_dict(state: Mapping[str, Any], model_state: Mapping[str, Any]) -> StateMatch:
    """Compare the file's ``state`` with ``model_state`` (``model.state_dict()``, or the part of it to load) key
    by key: same name and same shape fits. Values need a ``.shape``."""
    fits: list[str] = []
    missing: list[str] = []
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    unfit: list[str] = []
    for k, v in model_state.items():
        if k not in state:
            missing.append(k)
            unfit.append(k)
        elif tuple(state[k].shape) != tuple(v.shape):
            mismatched[k] = (tuple(state[k].shape), tuple(v.shape))
            unfit.append(k)
        else:
            fits.append(k)
    unexpected = [k for k in state if k not in model_state]
    return StateMatch(fits=fits, missing=missing, mismatched=mismatched, unexpected=unexpected, unfit=unfit)


def match_for_finetuning(
    state: Mapping[str, Any], model_state: Mapping[str, Any], head_prefixes: tuple[str, ...] = HEAD_PREFIXES
) -> dict[str, list[str]]:
    """What of ``state`` a fresh model (``model_state``) starts from when fine-tuning: every tensor that fits
    (:func:`match_state_dict`); head tensors (``head_prefixes``) may differ (another K) and stay fresh.

    Returns:
        ``{"loaded", "reinitialised", "ignored", "unfit"}``: model keys to load; head keys of the model kept fresh
        (missing or of another shape); file keys not in the model; and one line per backbone tensor that does
        not fit (``"key"`` missing, ``"key: (..) in the file, (..) in the model"``, ``"key: in the file, not in
        the model"``) -- any of those means the file is not this network's.
    """
    match = match_state_dict(state, model_state)
    reinit = [k for k in match.unfit if k.startswith(head_prefixes)]
    unfit = [
        f"{k}: {match.mismatched[k][0]} in the file, {match.mismatched[k][1]} in the model"
        if k in match.mismatched
        else k
        for k in match.unfit
        if not k.startswith(head_prefixes)
    ]
    unfit += [f"{k}: in the file, not in the model" for k in match.unexpected if not k.startswith(head_prefixes)]
    return {"loaded": match.fits, "reinitialised": reinit, "ignored": match.unexpected, "unfit": unfit}


def mismatch_summary(error: BaseException) -> str:
    """``load_state_dict``'s error in one line: the number of missing / unexpected keys and size mismatches, with
    the first size mismatch (instead of hundreds of lines)."""
    text = str(error)
    sizes = re.findall(r"size mismatch for ([\w.]+): copying a param with shape (\S+) from checkpoint, the shape in "
                       r"current model is (\S+)\.", text)  # fmt: skip
    missing = re.search(r"Missing key\(s\) in state_dict: (.*?)(?:\.\s|$)", text, re.S)
    unexpected = re.search(r"Unexpected key\(s\) in state_dict: (.*?)(?:\.\s|$)", text, re.S)
    parts = []
    if sizes:
        key, theirs, ours = sizes[0]
        parts.append(f"{len(sizes)} tensors of other shapes (e.g. {key}: {theirs} in the file, {ours} in the model)")
    for what, found in (("missing", missing), ("unexpected", unexpected)):
        if found:
            keys = [k.strip().strip('"') for k in found.group(1).split(",") if k.strip()]
            parts.append(f"{len(keys)} {what} keys (e.g. {keys[0]})")
    return "; ".join(parts) if parts else (text.splitlines() or ["weights do not fit"])[0]


# --------------------------------------------------------------------------------------- loaders
def load_official_checkpoint(
    model: HigherHRNet | ViTPoseAE, checkpoint: str | os.PathLike[str] | Mapping[str, object], name: str | None = None
) -> HigherHRNet | ViTPoseAE:
    """Load an official HigherHRNet / SWAHR or an MMPose 0.x checkpoint into ``model`` strictly.

    Accepts a raw ``state_dict``, a ``{'state_dict': ...}`` training checkpoint and/or keys with
    a ``module.`` (DataParallel) / ``_orig_mod.`` prefix (:func:`unwrap_state_dict`); the official names load as
    they are, MMPose 0.x names (an mmcv ``{"meta", "state_dict"}`` of MMPose's ``AssociativeEmbedding`` with an
    ``AEHigherResolutionHead`` or ``AESimpleHead``) are renamed first (:func:`convert_mmpose_state_dict`).

    Args:
        model: Model built with the checkpoint's configuration (a ``ViTPoseAE`` takes a raw ``state_dict`` of its
            own; a ViTPose top-down release is refused with a hint to ``model.pretrained``), e.g.
            ``HigherHRNet(width=32)`` for ``pose_higher_hrnet_w32_512.pth``, ``HigherHRNet(width=32, strides=(4,))``
            for MMPose's HRNet-W32 associative-embedding model.
        checkpoint: Local ``.pth`` path (loaded by :func:`load_weights_file`: ``weights_only=True``, on CPU) or an
            already loaded mapping.
        name: what the messages call the checkpoint (default: the path, ``"<state_dict>"`` for a mapping).

    Returns:
        ``model``, with the checkpoint's weights.

    Raises:
        FileNotFoundError: If ``checkpoint`` is a path that does not exist.
        ValueError: If it is not a state_dict.
        RuntimeError: If keys or shapes differ from ``model`` (message names the file, lists missing,
            unexpected and mismatched keys, and gives the width / number of keypoints / strides / layout the
            checkpoint appears to have and the model settings that would fit it).
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        path = os.fspath(checkpoint)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"HigherHRNet checkpoint not found: {path!r}")
        obj: object = load_weights_file(path)
        name = name or path
    else:
        obj, name = checkpoint, name or "<state_dict>"
    layout = weights_layout(obj)
    state = unwrap_state_dict(obj)
    match = match_state_dict(state, model.state_dict())
    if not match.exact:
        hint = ""
        if layout == MMPOSE_LAYOUT:
            hint = f" It is an {layout} checkpoint (its backbone. / keypoint_head. names converted)."
        elif layout == VIT_LAYOUT:
            hint = (
                f" It is a {layout} (top-down) release: its keypoint_head is not an associative-embedding head; "
                "its backbone initialises a ViTPoseAE of the same size through model.pretrained=<this file>."
            )
        arch = read_architecture(state)
        if arch is not None:
            hint += f" The checkpoint has width={arch.width}"
            if arch.num_keypoints is not None:
                hint += f", num_keypoints={arch.num_keypoints}"
            hint += f", {arch.out_channels[0]} stride-4 output channels, strides={list(arch.strides)}."
            fixes = [f"model.width={arch.width}"] if arch.width != getattr(model, "width", None) else []
            if arch.strides != model.strides:
                fixes.append(f"model.strides={list(arch.strides)}")
            if arch.num_keypoints is not None and arch.num_keypoints != model.num_keypoints:
                fixes.append(f"num_keypoints={arch.num_keypoints} (the data set's)")
            if fixes:
                hint += f" Build the model as the file's network: {', '.join(fixes)} (the experiment of that network)."
        has_scale = has_scale_heads(state)
        if has_scale and not model.swahr:
            hint += (
                " It is a SWAHR checkpoint (conv_scale_layers): build the model with swahr=True (model.swahr=true, "
                "e.g. experiment=swahr_w32)."
            )
        elif model.swahr and not has_scale:
            hint += " It has no SWAHR scale heads (conv_scale_layers): build the model with swahr=False."

        def _fmt(items: list[str]) -> str:
            return ", ".join(items[:10]) + (f", ... ({len(items)} in total)" if len(items) > 10 else "")

        mismatched = [f"{k}: checkpoint {theirs} vs model {ours}" for k, (theirs, ours) in match.mismatched.items()]
        size = f"width={model.width}" if hasattr(model, "width") else f"arch={getattr(model, 'arch', '?')!r}"
        raise RuntimeError(
            f"Checkpoint {name} does not match {type(model).__name__}({size}, "
            f"num_keypoints={model.num_keypoints}, strides={model.strides}, tag_dim={model.tag_dim}, "
            f"swahr={model.swahr}).{hint}\n"
            f"  missing keys ({len(match.missing)}): {_fmt(match.missing)}\n"
            f"  unexpected keys ({len(match.unexpected)}): {_fmt(match.unexpected)}\n"
            f"  shape mismatches ({len(mismatched)}): {_fmt(mismatched)}"
        )
    model.load_state_dict(state, strict=True)
    logger.info("Loaded %d tensors from %s", len(state), name)
    return model


def _read_pretrained(path: str) -> object:
    """``torch.load(path, weights_only=True)`` for ``model.pretrained``.

    Raises:
        ValueError: the file cannot be read as weights (the message names ``model.pretrained`` and why).
    """
    try:
        return load_weights_file(path)
    except Exception as e:  # noqa: BLE001 - re-raised with the file and the key
        # torch's own text starts with advice to load the file unsafely: keep only why it was refused
        kept = [
            part.strip()
            for part in str(e).split("\n\n")
            if part.strip() and "weights_only" not in part and not part.startswith(("Weights only", "Check the doc"))
        ]
        reason = (kept[0].splitlines()[0] if kept else type(e).__name__).rstrip(".")
        raise ValueError(
            f"cannot read model.pretrained={path!r}: {reason}. It must be a plain state_dict of weights "
            "(an ImageNet HRNet checkpoint such as hrnet_w32-36af842e.pth, an MAE or ViTPose checkpoint for a ViT); "
            "files holding other Python objects "
            "are refused because loading them could run code"
        ) from e


def load_pretrained_backbone(model: HigherHRNet, path: str | os.PathLike[str]) -> tuple[int, int]:
    """Initialise ``model``'s backbone (``model.backbone_state_keys()``) from a local ImageNet HRNet
    classification checkpoint (``HigherHRNet.load_pretrained_backbone``).

    Keys outside the backbone (classifier: ``incre_modules``, ``downsamp_modules``,
    ``final_layer``, ``classifier``; also the extra ``stage4`` fusion paths of the
    classifier's multi-scale last module) are skipped. Wrappers and prefixes as :func:`unwrap_state_dict`.

    Args:
        model: the network; changed in place.
        path: Local ``.pth`` file (``model.pretrained`` in the config).

    Returns:
        ``(num_loaded, num_skipped)`` checkpoint tensors.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file cannot be read as weights (the message names ``model.pretrained``), or a
            backbone tensor has the wrong shape (e.g. a W48 checkpoint for a
            W32 model) or no backbone tensor was found.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Pretrained backbone checkpoint not found: {path!r} (set model.pretrained to a local "
            "ImageNet HRNet checkpoint such as hrnet_w32-36af842e.pth, or to null to train from scratch)"
        )
    source = unwrap_state_dict(_read_pretrained(path))
    own = model.state_dict()
    backbone = {k: own[k] for k in model.backbone_state_keys()}
    match = match_state_dict(source, backbone)
    if match.mismatched:
        mismatched = [  # in the file's order
            f"{k}: checkpoint {match.mismatched[k][0]} vs model {match.mismatched[k][1]}"
            for k in source
            if k in match.mismatched
        ]
        raise ValueError(
            f"Pretrained checkpoint {path!r} does not match the HRNet-W{model.width} backbone "
            f"({len(mismatched)} shape mismatches, e.g. {mismatched[:3]}); check model.width and model.stem_channels "
            f"({PUBLISHED_STEM_CHANNELS} in the published backbones)"
        )
    if not match.fits:
        raise ValueError(f"Pretrained checkpoint {path!r} contains no HRNet backbone keys")
    model.load_state_dict({k: source[k] for k in match.fits}, strict=False)
    logger.info(
        "Loaded %d backbone tensors from %s; skipped %d non-backbone tensors; %d backbone tensors "
        "not in the checkpoint keep their initialisation",
        len(match.fits),
        path,
        len(match.unexpected),
        len(match.missing),
    )
    if match.missing:
        logger.debug("Backbone tensors not in %s: %s", path, sorted(match.missing))
    return len(match.fits), len(match.unexpected)


# --------------------------------------------------------------------------------------- ViT (ViTPose / MAE)
#: Layout names of ViT checkpoints (messages): ViTPose's releases (mmcv ``{"meta", "state_dict"}``, keys
#: ``backbone.*`` + the top-down ``keypoint_head.*``) and MAE's pre-training (``{"model": ...}``, backbone keys as
#: they are, with ``cls_token`` and ``norm``).
VIT_LAYOUT = "ViTPose"
MAE_LAYOUT = "MAE"
_VIT_PATCH_KEY = "patch_embed.proj.weight"
#: ``(embed_dim, depth)`` -> ViTPose size name, for messages (``bottomup.models.vit.VIT_SIZES``, which imports this
#: module, is the table; a test keeps the two equal).
_VIT_NAMES = {(384, 12): "small", (768, 12): "base", (1024, 24): "large", (1280, 32): "huge"}


def is_vit_state_dict(state: Mapping[str, Any]) -> bool:
    """Whether a ``state_dict`` (wrapper prefixes stripped) holds a ViT backbone in ViTPose / MAE names:
    ``patch_embed.proj.weight`` as it is or under ``backbone.``."""
    return _VIT_PATCH_KEY in state or _MMPOSE_BACKBONE + _VIT_PATCH_KEY in state


def vit_backbone_state(obj: object) -> tuple[dict[str, Any], list[str], str]:
    """The ViT backbone tensors of a loaded ViTPose or MAE checkpoint, in the backbone's own names.

    Unwrapped as ViTPose's loader does (``mmcv_custom/checkpoint.py``): the ``state_dict``, else ``model`` (MAE),
    else ``module`` mapping, else the mapping itself; :data:`WRAPPER_PREFIXES` stripped. When some keys start with
    ``backbone.`` (a ViTPose release, or this project's ``ViTPoseAE``), those are the backbone (prefix removed) and
    every other key (the top-down ``keypoint_head.*``) is set aside; else every key is the backbone's (MAE).

    Returns:
        ``(backbone, outside, layout)``: backbone name -> tensor; the keys that are not the backbone's (file
        names); :data:`VIT_LAYOUT` or :data:`MAE_LAYOUT`.

    Raises:
        ValueError: no mapping of names to tensors inside.
    """
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(f"Expected a state_dict (mapping of name -> tensor), got {type(obj).__name__}")
    state = strip_wrapper_prefixes(obj)
    if any(k.startswith(_MMPOSE_BACKBONE) for k in state):
        backbone = {k[len(_MMPOSE_BACKBONE) :]: v for k, v in state.items() if k.startswith(_MMPOSE_BACKBONE)}
        return backbone, [k for k in state if not k.startswith(_MMPOSE_BACKBONE)], VIT_LAYOUT
    return dict(state), [], MAE_LAYOUT


def adapt_vit_backbone_state(
    state: Mapping[str, Any], patch_size: int, grid: tuple[int, int]
) -> tuple[dict[str, Any], list[str]]:
    """A ViT checkpoint's backbone tensors made to fit a backbone of another patch kernel or position grid, as
    ViTPose's ``load_checkpoint`` (``mmcv_custom/checkpoint.py``, default ``patch_padding="pad"``) does it:

    * ``patch_embed.proj.weight`` of another kernel (MAE ViT-H: 14 x 14) is zero-padded to ``patch_size``
      (``diff // 2`` before, the rest after, on both axes; a larger kernel is cropped the same way);
    * ``pos_embed`` ``(1, n + 1, C)`` with ``n`` not the model's ``Hg * Wg`` is read as a square ``sqrt(n) x
      sqrt(n)`` grid (MAE: 14 x 14 at 224 / 16, 16 x 16 for ViT-H at 224 / 14; the official rule), else as a 4:3
      portrait grid (a ViTPose release for a model of another ``img_size``: 16 x 12 at 256 x 192, 24 x 18 at
      384 x 288; beyond the official loader, which reads only squares), and resized bicubically
      (``align_corners=False``) to ``grid``; slot 0 (the class token's) is kept. With ``n == Hg * Wg`` (a ViTPose
      release at 256 x 192 into the default model: 16 x 12) it is taken as it is.

    Args:
        state: backbone name -> tensor (:func:`vit_backbone_state`).
        patch_size: the model's patch kernel.
        grid: ``(Hg, Wg)``, the model's stored position grid.

    Returns:
        ``(state, notes)``: a new mapping (other values are the same objects) and one line per change made.

    Raises:
        ValueError: a ``pos_embed`` that is neither the model's grid, nor square, nor 4:3.
    """
    out = dict(state)
    notes: list[str] = []
    weight = out.get(_VIT_PATCH_KEY)
    if isinstance(weight, Tensor) and weight.dim() == 4 and tuple(weight.shape[2:]) != (patch_size, patch_size):
        diff = patch_size - int(weight.shape[-1])
        lo, hi = diff // 2, diff - diff // 2
        out[_VIT_PATCH_KEY] = torch.nn.functional.pad(weight, (lo, hi, lo, hi))
        notes.append(f"patch kernel {weight.shape[-2]}x{weight.shape[-1]} zero-padded to {patch_size}x{patch_size}")
    pos = out.get("pos_embed")
    hg, wg = grid
    if isinstance(pos, Tensor) and pos.dim() == 3 and pos.shape[1] - 1 != hg * wg:
        n = int(pos.shape[1]) - 1
        side = int(round(n**0.5))
        tall = int(round((4 * n / 3) ** 0.5))  # ViTPose's 4:3 portrait grids: 16 x 12 (256 x 192), 24 x 18 (384 x 288)
        if side * side == n:
            rows, cols = side, side
        elif tall % 4 == 0 and tall * (tall * 3 // 4) == n:
            rows, cols = tall, tall * 3 // 4
        else:
            raise ValueError(
                f"pos_embed of {n} positions is neither the model's {hg}x{wg} grid nor square nor 4:3: build the "
                "model with the checkpoint's model.img_size"
            )
        c = pos.shape[-1]
        tokens = pos[:, 1:].reshape(1, rows, cols, c).permute(0, 3, 1, 2)
        tokens = torch.nn.functional.interpolate(tokens.float(), size=(hg, wg), mode="bicubic", align_corners=False)
        tokens = tokens.to(pos.dtype).permute(0, 2, 3, 1).reshape(1, hg * wg, c)
        out["pos_embed"] = torch.cat((pos[:, :1], tokens), dim=1)
        notes.append(f"pos_embed resized from {rows}x{cols} to {hg}x{wg} (bicubic)")
    return out, notes


def load_vit_pretrained(model: ViTPoseAE, path: str | os.PathLike[str]) -> tuple[int, int]:
    """Initialise ``model.backbone`` (a ViTPose ``VisionTransformer``) from a local ViT checkpoint
    (``model.pretrained``): an MAE pre-training checkpoint (``mae_pretrain_vit_{base,large,huge}.pth``:
    ``{"model": ...}``, ViTPose-S's MAE file) or a ViTPose release (``vitpose-b.pth``, ...: mmcv
    ``{"meta", "state_dict"}`` with ``backbone.*`` and the top-down ``keypoint_head.*``), read with the weights-only
    loader (:func:`load_weights_file`).

    As ViTPose's own loader (``mmcv_custom/checkpoint.py``, non-strict): the backbone tensors
    (:func:`vit_backbone_state`) are adapted (:func:`adapt_vit_backbone_state`: patch kernel padded, ``pos_embed``
    resized) and those that fit by name and shape load; the rest is skipped and logged: the top-down head of a
    ViTPose release (not this network's), MAE's ``cls_token`` and final ``norm.*`` (ViTPose has no class token and
    its own ``last_norm``, which then keeps its initialisation), a decoder or ``mask_token`` where present.

    Args:
        model: the network (``ViTPoseAE``); changed in place.
        path: local checkpoint file.

    Returns:
        ``(num_loaded, num_skipped)`` checkpoint tensors (ViT-B from MAE: ``(147, 3)``; from a ViTPose-B release:
        ``(149, 14)``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be read as weights (names ``model.pretrained``), a backbone tensor has another
            shape than the model's (another size: names ``model.arch``), a ``pos_embed`` of an unknown grid, or no
            ViT backbone tensor at all.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Pretrained ViT checkpoint not found: {path!r} (set model.pretrained to a local MAE or ViTPose "
            "checkpoint such as mae_pretrain_vit_base.pth, or to null to train from scratch)"
        )
    source, outside, layout = vit_backbone_state(_read_pretrained(path))
    backbone = model.backbone
    source, notes = adapt_vit_backbone_state(source, backbone.patch_size, backbone.grid)
    match = match_state_dict(source, backbone.state_dict())
    if match.mismatched:
        shown = [f"{k}: checkpoint {theirs} vs model {ours}" for k, (theirs, ours) in match.mismatched.items()]
        raise ValueError(
            f"Pretrained checkpoint {path!r} does not match the ViT backbone of model.arch={model.arch} "
            f"(embed_dim={backbone.embed_dim}, depth={backbone.depth}): {len(shown)} shape mismatches, e.g. "
            f"{shown[:3]}; check model.arch"
        )
    if not match.fits:
        raise ValueError(
            f"Pretrained checkpoint {path!r} contains no ViT backbone keys (patch_embed, pos_embed, blocks)"
        )
    backbone.load_state_dict({k: source[k] for k in match.fits}, strict=False)
    skipped = outside + match.unexpected
    heads = [k for k in outside if k.startswith(_MMPOSE_HEAD)]
    parts = []
    if heads:
        parts.append(f"{len(heads)} {_MMPOSE_HEAD}* tensors (ViTPose's top-down head, not this network's)")
    others = [k for k in skipped if k not in heads]
    if others:
        parts.append(", ".join(others[:6]) + (f", ... ({len(others)} in all)" if len(others) > 6 else ""))
    logger.info(
        "Loaded %d ViT backbone tensors from %s (%s layout%s); skipped %d: %s; %d backbone tensors not in the "
        "checkpoint keep their initialisation%s",
        len(match.fits),
        path,
        layout,
        "".join(f"; {n}" for n in notes),
        len(skipped),
        "; ".join(parts) or "none",
        len(match.missing),
        f" ({', '.join(match.missing)})" if match.missing else "",
    )
    return len(match.fits), len(skipped)

"""Pretrained models by name: the one table (:data:`ZOO`) of published weights and where they come from.

Each :class:`ZooEntry` names a file (URL, checksum), the network it holds (an experiment in ``conf/experiment``),
its weight layout, the published AP with its source, the input size and the licence. :func:`fetch_weights` turns
a name into a verified file in the cache (``$BOTTOMUP_CACHE/weights/<name>/<file>``, default
``~/.cache/bottomup/weights``), downloading it first when it is not there (``bottomup.core.download.fetch``:
checksum verified before use, atomic write, progress bar, ``BOTTOMUP_OFFLINE=1``). A mirror replaces the base URL
of every downloadable entry (``mirror=`` or ``$BOTTOMUP_WEIGHTS_MIRROR``; an ``http(s)://`` URL, ``file://`` URL or
folder holding the same tree as https://download.openmmlab.com/mmpose/).

The figures are the publishers', not reproduced here. Three groups:

* MMPose 0.x associative-embedding checkpoints (layout ``"mmpose"``: ``{"meta", "state_dict"}`` with ``backbone.``
  / ``keypoint_head.`` keys), downloadable; the 8 hex digits in each file name are the start of its SHA-256
  (MMPose's ``publish_model``), checked on download. Rows as in the MMPose v0.29.0 docs / configs.
* Official HigherHRNet and SWAHR checkpoints (layout ``"official"``), published on Google Drive / OneDrive /
  BaiduYun only: no direct download. The entry says where to get the file and which cache path to put it in; from
  there it loads by name. No checksum is published for them.
* ImageNet HRNet backbones for ``model.pretrained=NAME`` (layout ``"imagenet"``), via MMPose's mirror (URL as in
  MMPose's configs). The 8 hex digits of their names are taken as the start of the SHA-256 too (torch.hub's naming
  convention, which these names follow); not checked against the real files here (no network).
* MAE pre-trained ViT backbones for a ``ViTPoseAE``'s ``model.pretrained=NAME`` (layout ``"mae"``; what ViTPose
  trains from): B / L / H from the MAE release (under :data:`MAE_BASE`, not MMPose's; MAE publishes MD5 prefixes,
  no SHA-256, so these downloads are not checksum-verified: the file is still read weights-only), S from the
  ViTPose README's OneDrive link (no direct download).

Nothing here downloads at import or without a name having been asked for.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from bottomup.core.download import DownloadError, fetch, weights_cache

__all__ = [
    "MMPOSE_BASE",
    "MAE_BASE",
    "ENV_MIRROR",
    "ZooEntry",
    "ZOO",
    "UnknownWeightsError",
    "get_entry",
    "is_zoo_name",
    "mirror_base",
    "fetch_weights",
    "describe_entries",
]

#: Base URL of MMPose's downloads; every downloadable entry's file lies under it (a mirror replaces it).
MMPOSE_BASE = "https://download.openmmlab.com/mmpose/"
#: Environment variable holding a mirror base URL (or folder) that replaces :data:`MMPOSE_BASE`.
ENV_MIRROR = "BOTTOMUP_WEIGHTS_MIRROR"
#: Base URL of the MAE release's files (entries with ``base=MAE_BASE``; a mirror replaces it too).
MAE_BASE = "https://dl.fbaipublicfiles.com/"
_MAE = "https://github.com/facebookresearch/mae"
_VITPOSE = "https://github.com/ViTAE-Transformer/ViTPose"

_MMPOSE_DOCS = (
    "https://github.com/open-mmlab/mmpose/blob/v0.29.0/configs/body/2d_kpt_sview_rgb_img/associative_embedding/"
)
_HIGHERHRNET = "https://github.com/HRNet/HigherHRNet-Human-Pose-Estimation"
_SWAHR = "https://github.com/greatlog/SWAHR-HumanPose"
_HIGHERHRNET_GET = (
    "the official HigherHRNet model zoo (README of HRNet/HigherHRNet-Human-Pose-Estimation): Google Drive "
    "https://drive.google.com/open?id=1bdXVmYrSynPLSk5lptvgyQ8fhziobD50 or OneDrive "
    "https://1drv.ms/f/s!AhIXJn_J-blW4AwKRMklXVzndJT0"
)
_SWAHR_GET = (
    "the official SWAHR weights (README of greatlog/SWAHR-HumanPose): Google Drive "
    "https://drive.google.com/drive/folders/13FFvwK7bDZLD4H_toueopbLhJqFjimlu or BaiduYun "
    "https://pan.baidu.com/s/1aifAVwUbfAvRN4ZxrItZxQ (password 8weh)"
)


class UnknownWeightsError(ValueError):
    """A name that is not in :data:`ZOO` (the message gives the closest names and ``python -m bottomup.zoo``)."""


@dataclass(frozen=True)
class ZooEntry:
    """One published set of weights.

    Attributes:
        name: the zoo name, ``<network>_w<width>_<data set>_<input size>[_udp|_official]`` (``higherhrnet_w32_coco_512``),
            or ``hrnet_w<width>_imagenet`` / ``mae_vit_<size>`` for a backbone.
        kind: ``"pose"`` (a whole network: inference, evaluation, fine-tuning) or ``"backbone"`` (ImageNet HRNet or
            MAE ViT, for ``model.pretrained``).
        file: the file's name as published.
        layout: ``"mmpose"`` (MMPose 0.x ``{"meta", "state_dict"}``), ``"official"`` (HigherHRNet / SWAHR
            ``state_dict``), ``"imagenet"`` (an HRNet classification ``state_dict``) or ``"mae"`` (an MAE
            pre-training ``{"model": ...}``, loaded by ``bottomup.models.weights.load_vit_pretrained``).
        experiment: the ``conf/experiment`` that builds the network and its data / test settings (``None`` for a
            backbone).
        width: HRNet width (32, 48); 0 for a ViT.
        url_path: the file's path under the base URL (:attr:`base`, or a mirror); ``None``: no direct
            download (:attr:`get` says where to get it).
        sha256: the file's full SHA-256 when known.
        sha256_prefix: the start of its SHA-256 (the hex digits in an MMPose file name) when the full one is not.
        ap: published AP, single-scale test with flip (``None`` for a backbone).
        ap_multiscale: published AP with multi-scale test (``None`` when not published).
        benchmark: the set the AP is on (``"COCO val2017"``, ``"CrowdPose test"``).
        source: where the AP (and file) are published.
        input_size: the network input size the AP was measured at (the experiment's ``data.input_size``).
        size_mb: approximate file size, MB (from the published parameter count: 4 bytes each).
        licence: the licence the weights are published under, as far as stated.
        udp: trained and tested with UDP (unbiased data processing); passed as the test-time setting ``udp``
            where this version has it.
        get: where to get a file without a direct download.
        arch: the ViT size (``model.arch``) of a ViT backbone, else ``None``.
        base: the base URL :attr:`url_path` is under when no mirror is set (``None``: :data:`MMPOSE_BASE`).
    """

    name: str
    kind: str
    file: str
    layout: str
    experiment: str | None
    width: int
    url_path: str | None
    sha256: str | None
    sha256_prefix: str | None
    ap: float | None
    ap_multiscale: float | None
    benchmark: str
    source: str
    input_size: int
    size_mb: float
    licence: str
    udp: bool = False
    get: str = ""
    arch: str | None = None
    base: str | None = None

    def url(self, mirror: str | None = None) -> str | None:
        """The download URL: :attr:`url_path` under ``mirror`` (:func:`mirror_base`: the argument, else
        ``$BOTTOMUP_WEIGHTS_MIRROR``, else :attr:`base` or :data:`MMPOSE_BASE`); ``None`` without a direct
        download. A mirror holds every downloadable file at its :attr:`url_path`."""
        if self.url_path is None:
            return None
        return mirror_base(mirror, self.base or MMPOSE_BASE).rstrip("/") + "/" + self.url_path

    def cache_path(self) -> Path:
        """Where the file is kept: ``$BOTTOMUP_CACHE/weights/<name>/<file>`` (default ``~/.cache/bottomup``)."""
        return weights_cache() / self.name / self.file

    def summary(self) -> str:
        """One line: ``"pretrained higherhrnet_w32_coco_512 (mmpose layout; published AP 0.677 on COCO val2017)"``."""
        ap = f"published AP {self.ap:.3f} on {self.benchmark}" if self.ap is not None else self.benchmark
        return f"pretrained {self.name} ({self.layout} layout; {ap})"

    def is_cached(self) -> bool:
        """Whether a file is at :meth:`cache_path` (not verified here; :func:`fetch_weights` verifies it)."""
        return self.cache_path().is_file()


def mirror_base(mirror: str | None = None, default: str = MMPOSE_BASE) -> str:
    """The base URL downloads use: ``mirror``, else ``$BOTTOMUP_WEIGHTS_MIRROR``, else ``default`` (the entry's
    own base: :data:`MMPOSE_BASE` or :data:`MAE_BASE`)."""
    return mirror or os.environ.get(ENV_MIRROR) or default


def _mmpose(name: str, file: str, folder: str, experiment: str, width: int, ap: float, ap_ms: float | None, *,
            doc: str, input_size: int = 512, udp: bool = False, benchmark: str = "COCO val2017") -> ZooEntry:  # fmt: skip
    prefix = file.rsplit("-", 1)[1].split("_", 1)[0]  # higher_hrnet32_coco_512x512-8ae85183_20200713.pth
    size = {32: 115.0, 48: 255.0}[width]
    return ZooEntry(
        name=name, kind="pose", file=file, layout="mmpose", experiment=experiment, width=width,
        url_path=f"{folder}/{file}", sha256=None, sha256_prefix=prefix, ap=ap, ap_multiscale=ap_ms,
        benchmark=benchmark, source=_MMPOSE_DOCS + doc, input_size=input_size, size_mb=size,
        licence="Apache-2.0 (MMPose)", udp=udp,
    )  # fmt: skip


def _official(name: str, file: str, experiment: str, width: int, ap: float, ap_ms: float, *, swahr: bool,
              input_size: int, benchmark: str = "COCO val2017", folder: str = "pose_coco") -> ZooEntry:  # fmt: skip
    return ZooEntry(
        name=name, kind="pose", file=file, layout="official", experiment=experiment, width=width, url_path=None,
        sha256=None, sha256_prefix=None, ap=ap, ap_multiscale=ap_ms, benchmark=benchmark,
        source=(_SWAHR if swahr else _HIGHERHRNET) + " (README, Main Results)", input_size=input_size,
        size_mb={32: 115.0, 48: 255.0}[width],
        licence="not stated in the repository's README" if swahr else "MIT (HigherHRNet repository)",
        get=f"{_SWAHR_GET if swahr else _HIGHERHRNET_GET}, file {folder}/{file}",
    )  # fmt: skip


def _backbone(width: int, file: str) -> ZooEntry:
    return ZooEntry(
        name=f"hrnet_w{width}_imagenet", kind="backbone", file=file, layout="imagenet", experiment=None,
        width=width, url_path=f"pretrain_models/{file}", sha256=None, sha256_prefix=file.rsplit("-", 1)[1][:8],
        ap=None, ap_multiscale=None, benchmark="ImageNet (classification backbone)",
        source=_MMPOSE_DOCS + "coco/higherhrnet_w32_coco_512x512.py (model.pretrained); the official HigherHRNet "
        "README names the same file (models/pytorch/imagenet)",
        input_size=224, size_mb={32: 165.0, 48: 310.0}[width], licence="MIT (HRNet-Image-Classification)",
        get=f"{_HIGHERHRNET_GET}, file imagenet/{file}",
    )  # fmt: skip


#: MAE's published MD5 prefixes (README of facebookresearch/mae; not what ``fetch`` checks, for the record).
_MAE_MD5 = {"base": "8cad7c", "large": "b8b06e", "huge": "9bdbb0"}
_MAE_SIZE_MB = {"small": 87.0, "base": 343.0, "large": 1213.0, "huge": 2524.0}  # 4 bytes per encoder parameter


def _mae(size: str) -> ZooEntry:
    file = f"mae_pretrain_vit_{size}.pth"
    common = dict(
        name=f"mae_vit_{size}", kind="backbone", file=file, layout="mae", experiment=None, width=0,
        sha256=None, sha256_prefix=None, ap=None, ap_multiscale=None, input_size=224, size_mb=_MAE_SIZE_MB[size],
        arch=size, benchmark="ImageNet-1K MAE pre-training (ViT backbone)",
    )  # fmt: skip
    if size == "small":  # trained by the ViTPose authors; OneDrive only
        return ZooEntry(
            url_path=None, source=_VITPOSE + " (README, MAE Pre-trained model)",
            licence="not stated for the weights (ViTPose repository: Apache-2.0)",
            get=f"the ViTPose README's OneDrive link https://1drv.ms/u/s!AimBgYV7JjTlgccZeiFjh4DJ7gjYyg?e=iTMdMq "
            f"({_VITPOSE}, 'MAE Pre-trained model'), saved as {file}",
            **common,
        )  # type: ignore[arg-type]  # fmt: skip
    return ZooEntry(
        url_path=f"mae/pretrain/{file}", base=MAE_BASE,
        source=f"{_MAE} (README, pre-trained checkpoints; MD5 starts {_MAE_MD5[size]}); ViTPose trains from it",
        licence="CC BY-NC 4.0 (MAE repository)", **common,
    )  # type: ignore[arg-type]  # fmt: skip


_ENTRIES: tuple[ZooEntry, ...] = (
    # MMPose 0.x (v0.29.0 docs: configs/body/2d_kpt_sview_rgb_img/associative_embedding/{coco,crowdpose}/*.md)
    _mmpose("higherhrnet_w32_coco_512", "higher_hrnet32_coco_512x512-8ae85183_20200713.pth", "bottom_up",
            "higherhrnet_w32", 32, 0.677, 0.706, doc="coco/higherhrnet_coco.md"),
    _mmpose("higherhrnet_w32_coco_640", "higher_hrnet32_coco_640x640-a22fe938_20200712.pth", "bottom_up",
            "higherhrnet_w32_640", 32, 0.686, 0.706, doc="coco/higherhrnet_coco.md", input_size=640),
    _mmpose("higherhrnet_w48_coco_512", "higher_hrnet48_coco_512x512-60fedcbc_20200712.pth", "bottom_up",
            "higherhrnet_w48", 48, 0.686, 0.716, doc="coco/higherhrnet_coco.md"),
    _mmpose("higherhrnet_w32_coco_512_udp", "higher_hrnet32_coco_512x512_udp-8cc64794_20210222.pth", "bottom_up",
            "higherhrnet_w32", 32, 0.678, None, doc="coco/higherhrnet_udp_coco.md", udp=True),
    _mmpose("higherhrnet_w48_coco_512_udp", "higher_hrnet48_coco_512x512_udp-7cad61ef_20210222.pth", "bottom_up",
            "higherhrnet_w48", 48, 0.690, None, doc="coco/higherhrnet_udp_coco.md", udp=True),
    _mmpose("hrnet_w32_ae_coco_512", "hrnet_w32_coco_512x512-bcb8c247_20200816.pth", "bottom_up",
            "hrnet_w32_ae", 32, 0.654, 0.698, doc="coco/hrnet_coco.md"),
    _mmpose("hrnet_w48_ae_coco_512", "hrnet_w48_coco_512x512-cf72fcdf_20200816.pth", "bottom_up",
            "hrnet_w48_ae", 48, 0.665, 0.712, doc="coco/hrnet_coco.md"),
    _mmpose("hrnet_w32_ae_coco_512_udp", "hrnet_w32_coco_512x512_udp-91663bf9_20210220.pth", "bottom_up",
            "hrnet_w32_ae", 32, 0.671, None, doc="coco/hrnet_udp_coco.md", udp=True),
    _mmpose("hrnet_w48_ae_coco_512_udp", "hrnet_w48_coco_512x512_udp-de08fd8c_20210222.pth", "bottom_up",
            "hrnet_w48_ae", 48, 0.681, None, doc="coco/hrnet_udp_coco.md", udp=True),
    _mmpose("higherhrnet_w32_crowdpose_512", "higher_hrnet32_crowdpose_512x512-1aa4a132_20201017.pth", "bottom_up",
            "higherhrnet_w32_crowdpose", 32, 0.655, 0.661, doc="crowdpose/higherhrnet_crowdpose.md",
            benchmark="CrowdPose test"),
    # official HigherHRNet (README of HRNet/HigherHRNet-Human-Pose-Estimation): no direct download
    _official("higherhrnet_w32_coco_512_official", "pose_higher_hrnet_w32_512.pth", "higherhrnet_w32", 32, 0.671,
              0.699, swahr=False, input_size=512),
    _official("higherhrnet_w32_coco_640_official", "pose_higher_hrnet_w32_640.pth", "higherhrnet_w32_640", 32,
              0.685, 0.706, swahr=False, input_size=640),
    _official("higherhrnet_w48_coco_640_official", "pose_higher_hrnet_w48_640.pth", "higherhrnet_w48_640", 48,
              0.699, 0.721, swahr=False, input_size=640),
    # official SWAHR (README of greatlog/SWAHR-HumanPose): no direct download
    _official("swahr_w32_coco_512", "pose_higher_hrnet_w32_512.pth", "swahr_w32", 32, 0.689, 0.714, swahr=True,
              input_size=512),
    _official("swahr_w48_coco_640", "pose_higher_hrnet_w48_640.pth", "swahr_w48_640", 48, 0.708, 0.732,
              swahr=True, input_size=640),
    _official("swahr_w48_crowdpose_640", "pose_higher_hrnet_w48_640.pth", "swahr_w48_640_crowdpose", 48, 0.716,
              0.738, swahr=True, input_size=640, benchmark="CrowdPose test", folder="pose_crowdpose"),
    # ImageNet HRNet backbones (model.pretrained=NAME), MMPose's mirror of the official files
    _backbone(32, "hrnet_w32-36af842e.pth"),
    _backbone(48, "hrnet_w48-8ef0771d.pth"),
    # MAE ViT backbones (model.pretrained=NAME of a ViTPoseAE of that size)
    *(_mae(size) for size in ("small", "base", "large", "huge")),
)  # fmt: skip

#: Every entry by name.
ZOO: dict[str, ZooEntry] = {entry.name: entry for entry in _ENTRIES}


def is_zoo_name(value: object) -> bool:
    """Whether ``value`` is a name in :data:`ZOO` (a string without a path separator)."""
    return isinstance(value, str) and value in ZOO


def get_entry(name: str, kind: str | None = None) -> ZooEntry:
    """The entry of ``name``.

    Args:
        name: a name in :data:`ZOO`.
        kind: ``"pose"`` / ``"backbone"`` when the caller needs that kind (the message says where the other
            kind goes).

    Raises:
        UnknownWeightsError: (a ``ValueError``) no such name; the message lists the closest names and says that
            ``python -m bottomup.zoo`` lists them all.
        ValueError: the entry is of another ``kind``.
    """
    entry = ZOO.get(name)
    if entry is None:
        close = difflib.get_close_matches(str(name), list(ZOO), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UnknownWeightsError(
            f"{name!r} is not a pretrained model name{hint} (python -m bottomup.zoo lists them; a local file is "
            "given by its path)"
        )
    if kind is not None and entry.kind != kind:
        where = "model.pretrained=NAME (a backbone to train from)" if entry.kind == "backbone" else (
            "checkpoint= / weights= / --weights (a whole network)")  # fmt: skip
        raise ValueError(f"{name} is a {entry.kind} ({entry.layout} weights): use it as {where}")
    return entry


def fetch_weights(
    name: str | ZooEntry,
    *,
    kind: str | None = None,
    mirror: str | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> Path:
    """The verified file of a zoo entry in the cache, downloaded first when it is not there.

    Args:
        name: a name in :data:`ZOO`, or an entry.
        kind: the kind the caller needs (:func:`get_entry`).
        mirror: base URL (or folder) replacing :data:`MMPOSE_BASE`; default ``$BOTTOMUP_WEIGHTS_MIRROR``.
        offline: never download; default ``$BOTTOMUP_OFFLINE``.
        progress: a tqdm progress bar while downloading.

    Returns:
        :meth:`ZooEntry.cache_path`, holding the file (verified against its checksum where one is published).

    Raises:
        UnknownWeightsError / ValueError: as :func:`get_entry`.
        bottomup.core.download.DownloadError: the file is not in the cache and cannot be downloaded (offline, no
            direct download, network or HTTP failure, checksum mismatch); the message names the URL, the expected
            checksum and the path to put the file in by hand (and, without a direct download, where to get it).
    """
    entry = name if isinstance(name, ZooEntry) else get_entry(name, kind)
    try:
        return fetch(
            entry.url(mirror),
            entry.cache_path(),
            sha256=entry.sha256,
            sha256_prefix=entry.sha256_prefix,
            offline=offline,
            progress=progress,
            what=f"pretrained model {entry.name} ({entry.file})",
        )
    except DownloadError as e:
        if entry.url_path is not None:
            raise
        raise DownloadError(f"{e}\n  get it from {entry.get}", url=None, path=e.path) from None


def _fmt_ap(entry: ZooEntry) -> str:
    if entry.ap is None:
        return "-"
    multi = f" ({entry.ap_multiscale:.3f} multi-scale)" if entry.ap_multiscale is not None else ""
    return f"{entry.ap:.3f}{multi}"


def describe_entries() -> list[dict[str, str]]:
    """One row per entry for a listing: ``name``, ``ap`` (published, on ``benchmark``), ``benchmark``, ``input``,
    ``size`` (the cached file's, else the approximate published one), ``cached`` (``"yes"`` / ``"no"``),
    ``download`` (``"direct"`` / ``"by hand"``), ``layout``, ``experiment``."""
    rows = []
    for entry in ZOO.values():
        path = entry.cache_path()
        cached = path.is_file()
        size = f"{path.stat().st_size / 1e6:.0f} MB" if cached else f"~{entry.size_mb:.0f} MB"
        rows.append({
            "name": entry.name, "ap": _fmt_ap(entry), "benchmark": entry.benchmark,
            "input": str(entry.input_size), "size": size, "cached": "yes" if cached else "no",
            "download": "direct" if entry.url_path else "by hand", "layout": entry.layout,
            "experiment": entry.experiment or "(model.pretrained)",
        })  # fmt: skip
    return rows

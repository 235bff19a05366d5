"""Pretrained models by name (bottomup.models.zoo) and their downloads (bottomup.core.download), all offline: the
files are synthesised here and served by an HTTP server on 127.0.0.1 (``weights_server`` in conftest)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import biased_quickstart_network
from omegaconf import OmegaConf

from bottomup import build
from bottomup.api import PoseEstimator
from bottomup.core.download import DownloadError, fetch, file_sha256
from bottomup.models.zoo import (
    ENV_MIRROR,
    MMPOSE_BASE,
    ZOO,
    UnknownWeightsError,
    ZooEntry,
    fetch_weights,
    get_entry,
)

EXPERIMENT = "quickstart"  # the synthesised files hold the quickstart's slim W16 (fast to build and run)


def _write_official(state: dict[str, torch.Tensor], path: Path) -> None:
    """An official HigherHRNet-layout ``.pth``: the raw ``state_dict``."""
    torch.save(state, path)


def _write_mmpose(state: dict[str, torch.Tensor], path: Path) -> None:
    """An MMPose 0.x checkpoint: ``{"meta", "state_dict"}`` with ``backbone.`` / ``keypoint_head.`` names (the
    HigherHRNet head keeps the official ``final_layers`` / ``deconv_layers`` names under its prefix) and numpy
    values in ``meta``, as mmcv writes them."""
    heads = ("final_layers.", "deconv_layers.")
    renamed = {("keypoint_head." if k.startswith(heads) else "backbone.") + k: v for k, v in state.items()}
    meta = {"mmcv_version": "1.3.8", "time": "Mon Jul 13 00:00:00 2020", "epoch": np.int64(300), "CLASSES": None}
    torch.save({"meta": meta, "state_dict": renamed}, path)


#: layout -> writer of a file in that layout from our ``state_dict``: every download test runs on each.
LAYOUTS: dict[str, Callable[[dict[str, torch.Tensor], Path], None]] = {
    "official": _write_official,
    "mmpose": _write_mmpose,
}


@pytest.fixture(scope="module")
def network() -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    """The quickstart's network with heatmap biases that find people everywhere (so that grouping has work):
    ``(state_dict, model)``."""
    model = biased_quickstart_network(EXPERIMENT)
    return {k: v.clone() for k, v in model.state_dict().items()}, model


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def _entry(name: str, file: str, *, sha256: str | None = None, prefix: str | None = None, layout: str = "official",
           kind: str = "pose", experiment: str | None = EXPERIMENT) -> ZooEntry:  # fmt: skip
    return ZooEntry(
        name=name, kind=kind, file=file, layout=layout, experiment=experiment, width=16,
        url_path=f"bottom_up/{file}", sha256=sha256, sha256_prefix=prefix, ap=None, ap_multiscale=None,
        benchmark="test", source="this test", input_size=160, size_mb=1.0, licence="test",
    )  # fmt: skip


def _serve(server, monkeypatch, writer, state, *, name="test_w16_synthetic_160", full_hash=True) -> ZooEntry:
    """Write ``state`` with ``writer`` into the server's ``bottom_up/``, named MMPose-style with its SHA-256
    prefix, and register a zoo entry for it (full SHA-256 or the prefix only)."""
    staged = server.root / "staged.pth"
    writer(state, staged)
    digest = file_sha256(staged)
    file = f"test_w16_{digest[:8]}_20250101.pth"
    (server.root / "bottom_up").mkdir(exist_ok=True)
    staged.rename(server.root / "bottom_up" / file)
    entry = _entry(name, file, sha256=digest if full_hash else None, prefix=None if full_hash else digest[:8])
    monkeypatch.setitem(ZOO, name, entry)
    return entry


def _leftovers(entry: ZooEntry) -> list[Path]:
    folder = entry.cache_path().parent
    return sorted(folder.iterdir()) if folder.is_dir() else []


# ------------------------------------------------------------------------------------------ the table
def test_table_rows_are_the_published_ones() -> None:
    """Spot checks against MMPose v0.29.0's docs and the official READMEs; every MMPose file is under its base
    URL and carries the start of its SHA-256 in its name; names follow one scheme."""
    e = ZOO["higherhrnet_w32_coco_512"]
    assert e.url() == MMPOSE_BASE + "bottom_up/higher_hrnet32_coco_512x512-8ae85183_20200713.pth"
    assert (e.ap, e.ap_multiscale, e.sha256_prefix, e.layout, e.experiment) == (
        0.677, 0.706, "8ae85183", "mmpose", "higherhrnet_w32")  # fmt: skip
    assert (ZOO["higherhrnet_w48_coco_512"].ap, ZOO["higherhrnet_w48_coco_512"].ap_multiscale) == (0.686, 0.716)
    assert ZOO["hrnet_w32_ae_coco_512_udp"].file == "hrnet_w32_coco_512x512_udp-91663bf9_20210220.pth"
    assert ZOO["hrnet_w32_ae_coco_512_udp"].udp and not ZOO["hrnet_w32_ae_coco_512"].udp
    crowd = ZOO["higherhrnet_w32_crowdpose_512"]
    assert (crowd.ap, crowd.ap_multiscale, crowd.benchmark) == (0.655, 0.661, "CrowdPose test")
    assert ZOO["hrnet_w32_imagenet"].url() == MMPOSE_BASE + "pretrain_models/hrnet_w32-36af842e.pth"
    assert ZOO["swahr_w32_coco_512"].url() is None and "drive.google.com" in ZOO["swahr_w32_coco_512"].get
    scheme = re.compile(r"^(higherhrnet_w\d+|hrnet_w\d+_ae|swahr_w\d+)_(coco|crowdpose)_\d+(_udp|_official)?$")
    for name, entry in ZOO.items():
        assert entry.name == name
        assert scheme.match(name) or re.match(r"^(hrnet_w\d+_imagenet|mae_vit_(small|base|large|huge))$", name), name
        assert entry.layout in ("mmpose", "official", "imagenet", "mae") and entry.kind in ("pose", "backbone")
        if entry.layout == "mmpose":
            assert entry.url_path.startswith("bottom_up/") and entry.url().startswith(MMPOSE_BASE), name
            assert f"-{entry.sha256_prefix}" in entry.file and len(entry.sha256_prefix) == 8, name
            assert entry.name.endswith("_udp") == entry.udp == ("_udp" in entry.file), name
        if entry.url_path is None:
            assert entry.get, f"{name}: no URL and no word on where to get it"


def test_readme_table_lists_every_model_with_its_published_ap() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Pretrained models", 1)[1].split("\n## ", 1)[0]
    for name, entry in ZOO.items():
        row = next((line for line in section.splitlines() if f"`{name}`" in line), None)
        assert row is not None, f"{name} is not in the README's table"
        if entry.ap is not None:
            assert f"| {entry.ap:.3f}" in row and f"| {entry.input_size} |" in row, row
            if entry.ap_multiscale is not None:
                assert f"({entry.ap_multiscale:.3f})" in row, row


@pytest.mark.parametrize("name", sorted(n for n, e in ZOO.items() if e.kind == "pose"))
def test_each_model_has_an_experiment_that_builds_its_network(name: str) -> None:
    entry = ZOO[name]
    cfg = build.compose("train", experiment=entry.experiment)
    assert cfg.model.width == entry.width and cfg.data.input_size == entry.input_size
    assert list(cfg.model.strides) == ([4] if name.startswith("hrnet_") else [4, 2])
    assert cfg.data.num_keypoints == (14 if "crowdpose" in name else 17)
    assert bool(cfg.model.swahr) == name.startswith("swahr")


def test_unknown_or_misused_names_are_explained() -> None:
    with pytest.raises(UnknownWeightsError, match="did you mean higherhrnet_w32_coco_512"):
        get_entry("higherhrnet_w32_coco512")
    with pytest.raises(ValueError, match=r"model\.pretrained=NAME"):
        get_entry("hrnet_w32_imagenet", kind="pose")
    with pytest.raises(ValueError, match="checkpoint="):
        get_entry("higherhrnet_w32_coco_512", kind="backbone")
    with pytest.raises(ValueError, match=r"checkpoint=higherhrnet_w32_coco51: no such file.*python -m bottomup\.zoo"):
        build.resolve_weights("higherhrnet_w32_coco51", key="checkpoint")
    assert build.resolve_weights("outputs/run/best.pt", key="checkpoint") == "outputs/run/best.pt"  # a path: as is


def test_command_lines_with_a_name_get_its_experiment() -> None:
    assert build.zoo_command_overrides(["weights=higherhrnet_w48_coco_512", "data.root=/d"], "weights") == [
        "experiment=higherhrnet_w48"
    ]
    assert build.zoo_command_overrides(["weights=higherhrnet_w48_coco_512", "experiment=x"], "weights") == []
    assert build.zoo_command_overrides(["+weights='hrnet_w48_ae_coco_512'"], "weights") == ["experiment=hrnet_w48_ae"]
    assert build.zoo_command_overrides(["checkpoint=runs/best.pt"], "checkpoint") == []
    udp = build.zoo_command_overrides(["weights=higherhrnet_w32_coco_512_udp"], "weights")
    assert udp == ["experiment=higherhrnet_w32", "test.udp=true"]
    assert build.zoo_test_overrides(ZOO["higherhrnet_w32_coco_512_udp"]) == {"udp": True}
    assert build.zoo_test_overrides(ZOO["higherhrnet_w32_coco_512"]) == {}
    # fine-tuning a UDP model trains on UDP targets too; what the command line sets is kept
    assert build.zoo_command_overrides(["checkpoint=hrnet_w32_ae_coco_512_udp"], "checkpoint") == [
        "experiment=hrnet_w32_ae",
        "test.udp=true",
        "data.udp=true",
    ]
    given = ["checkpoint=hrnet_w32_ae_coco_512_udp", "data.udp=false", "test.udp=false"]
    assert build.zoo_command_overrides(given, "checkpoint") == ["experiment=hrnet_w32_ae"]


# ------------------------------------------------------------------------------------------ downloads
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("how", ["argument, full sha256", "environment, sha256 prefix"])
def test_download_through_a_mirror_is_verified_cached_and_finds_the_same_people(
    layout, how, network, image, weights_server, monkeypatch, tmp_path
):
    state, _ = network
    entry = _serve(weights_server, monkeypatch, LAYOUTS[layout], state, full_hash=how.startswith("argument"))
    mirror = weights_server.url
    if how.startswith("environment"):
        monkeypatch.setenv(ENV_MIRROR, mirror)
        mirror = None
    assert not entry.is_cached()
    few = {"device": "cpu", "max_people": 5}  # grouping of random maps: 5 people are enough to compare
    downloaded = PoseEstimator.from_pretrained(entry.name, mirror=mirror, progress=False, **few)
    assert weights_server.requests == [f"/{entry.url_path}"]
    assert entry.cache_path().is_file() and _leftovers(entry) == [entry.cache_path()]  # no temporary left
    assert file_sha256(entry.cache_path()) == file_sha256(weights_server.root / entry.url_path)
    assert entry.name in downloaded.summary
    if how.startswith("argument"):  # the people, against the same tensors loaded from a file on disk
        local = tmp_path / "local.pth"
        LAYOUTS[layout](state, local)
        from_disk = PoseEstimator.from_checkpoint(local, experiment=EXPERIMENT, **few)
        a, b = downloaded(image), from_disk(image)
        assert len(a.scores) > 0
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        np.testing.assert_array_equal(a.scores, b.scores)
    weights = downloaded.backend.source.state_dict()
    assert weights.keys() == state.keys() and all(torch.equal(weights[k], v) for k, v in state.items())

    weights_server.stop()  # a second call uses the cache, without the network
    again = PoseEstimator.from_pretrained(entry.name, mirror=weights_server.url, progress=False, **few)
    assert all(torch.equal(again.backend.source.state_dict()[k], v) for k, v in state.items())
    assert len(weights_server.requests) == 1


def test_wrong_checksum_is_refused_and_not_kept(network, weights_server, monkeypatch):
    entry = _serve(weights_server, monkeypatch, _write_official, network[0])
    wrong = hashlib.sha256(b"another file").hexdigest()
    monkeypatch.setitem(ZOO, entry.name, _entry(entry.name, entry.file, sha256=wrong))
    with pytest.raises(DownloadError) as err:
        fetch_weights(entry.name, mirror=weights_server.url, progress=False)
    text = str(err.value)
    assert "not the published one" in text and "was not kept" in text
    assert f"{weights_server.url}/{entry.url_path}" in text and wrong in text and str(entry.cache_path()) in text
    assert _leftovers(entry) == []
    # the same with the prefix only
    monkeypatch.setitem(ZOO, entry.name, _entry(entry.name, entry.file, prefix="00000000"))
    with pytest.raises(DownloadError, match="starting with 00000000"):
        fetch_weights(entry.name, mirror=weights_server.url, progress=False)
    assert _leftovers(entry) == []


def test_interrupted_transfer_leaves_nothing_that_is_used(network, weights_server, monkeypatch):
    entry = _serve(weights_server, monkeypatch, _write_official, network[0])
    weights_server.cut.add(f"/{entry.url_path}")
    with pytest.raises(DownloadError, match="download failed.*nothing was kept") as err:
        fetch_weights(entry.name, mirror=weights_server.url, progress=False)
    assert str(entry.cache_path()) in str(err.value)
    assert _leftovers(entry) == [] and weights_server.requests == [f"/{entry.url_path}"]
    weights_server.cut.clear()  # the next call downloads the whole file
    path = fetch_weights(entry.name, mirror=weights_server.url, progress=False)
    assert file_sha256(path) == entry.sha256


def test_offline_mode_names_the_url_checksum_and_path(network, weights_server, monkeypatch):
    entry = _serve(weights_server, monkeypatch, _write_official, network[0], full_hash=False)
    monkeypatch.setenv("BOTTOMUP_OFFLINE", "1")
    with pytest.raises(DownloadError) as err:
        PoseEstimator.from_pretrained(entry.name, mirror=weights_server.url)
    text = str(err.value)
    assert "offline" in text and f"URL: {weights_server.url}/{entry.url_path}" in text
    assert f"SHA-256 starting with {entry.sha256_prefix}" in text
    assert f"put the file here by hand: {entry.cache_path()}" in text
    assert weights_server.requests == [] and _leftovers(entry) == []
    # put by hand where the message says: then it loads, still offline
    entry.cache_path().parent.mkdir(parents=True)
    (weights_server.root / entry.url_path).rename(entry.cache_path())
    assert PoseEstimator.from_pretrained(entry.name, device="cpu").summary.startswith(f"pretrained {entry.name}")


def test_a_cached_file_that_fails_its_checksum_is_not_used(weights_server, monkeypatch):
    entry = _entry("test_bad_cache", "bad-12345678.pth", prefix="12345678")
    monkeypatch.setitem(ZOO, entry.name, entry)
    entry.cache_path().parent.mkdir(parents=True)
    entry.cache_path().write_bytes(b"not these weights")
    with pytest.raises(DownloadError, match="the file in the cache is not the published one.*Delete it"):
        fetch_weights(entry.name, mirror=weights_server.url, progress=False)
    assert entry.cache_path().read_bytes() == b"not these weights" and weights_server.requests == []


def test_official_files_without_a_url_say_where_to_get_them_and_load_from_the_cache(weights_server):
    entry = ZOO["swahr_w32_coco_512"]
    with pytest.raises(DownloadError) as err:
        fetch_weights(entry.name)
    text = str(err.value)
    assert "no direct download" in text and str(entry.cache_path()) in text and "drive.google.com" in text
    assert f"{entry.name}/pose_higher_hrnet_w32_512.pth" in text
    entry.cache_path().parent.mkdir(parents=True)
    entry.cache_path().write_bytes(b"placed by hand")  # no checksum is published: used as it is
    assert fetch_weights(entry.name) == entry.cache_path() and weights_server.requests == []


def test_a_mirror_folder_on_disk_works_like_a_server(network, tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTOMUP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BOTTOMUP_OFFLINE")
    src = tmp_path / "shared" / "bottom_up" / "x.pth"
    src.parent.mkdir(parents=True)
    _write_official(network[0], src)
    dest = tmp_path / "cache" / "x.pth"
    dest.parent.mkdir()
    stale, fresh = dest.parent / ".x.pth.killed.part", dest.parent / ".x.pth.running.part"
    for part in (stale, fresh):
        part.write_bytes(b"half")
    os.utime(stale, (1e9, 1e9))  # a killed download's, long ago; the fresh one may be another process's under way
    assert fetch(str(src), dest, sha256=file_sha256(src), progress=False) == dest
    assert file_sha256(dest) == file_sha256(src)
    assert sorted(p.name for p in dest.parent.iterdir()) == [fresh.name, "x.pth"]


# ------------------------------------------------------------------------------------------ names in configs
def test_finetuning_and_evaluation_take_a_name(network, weights_server, monkeypatch, coco_root):
    state, _ = network
    entry = _serve(weights_server, monkeypatch, _write_official, state)
    monkeypatch.setenv(ENV_MIRROR, weights_server.url)
    cfg = build.compose("train", experiment=EXPERIMENT)
    fresh = build.build_model(cfg.model, pretrained=False)
    loaded = build.load_initial_weights(fresh, entry.name)  # python -m bottomup.train checkpoint=NAME
    assert len(loaded["loaded"]) == len(state) and not loaded["reinitialised"]
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    # python -m bottomup.evaluate weights=NAME (the data set given on the command line)
    overrides = [f"weights={entry.name}", f"experiment={EXPERIMENT}", "data=coco", f"data.root={coco_root}"]
    eval_cfg = build.compose("eval", overrides)
    model, info = build.evaluation_config(eval_cfg, overrides)
    assert eval_cfg.checkpoint == str(entry.cache_path()) and "official" in info["summary"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    both = build.compose("eval", [*overrides, "checkpoint=x.pt"])
    with pytest.raises(ValueError, match="give one"):
        build.evaluation_config(both, overrides)
    wide = build.compose("eval", [f"weights={entry.name}", "data=coco", f"data.root={coco_root}"])  # W32 default
    with pytest.raises(ValueError, match=f"pass experiment={EXPERIMENT}"):
        build.evaluation_config(wide, [])


def test_model_pretrained_takes_a_backbone_name(network, weights_server, monkeypatch):
    """``model.pretrained=NAME``: an ImageNet-layout backbone file (backbone tensors + a classifier) downloaded,
    verified and loaded into the backbone."""
    _, model = network
    torch.manual_seed(1)
    backbone = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()
                if k in set(model.backbone_state_keys())}  # fmt: skip
    path = weights_server.root / "pretrain_models" / "hrnet_w16-0.pth"
    path.parent.mkdir()
    torch.save({**backbone, "classifier.weight": torch.zeros(1000, 2048)}, path)
    entry = _entry("hrnet_w16_imagenet", path.name, sha256=file_sha256(path), kind="backbone", experiment=None,
                   layout="imagenet")  # fmt: skip
    monkeypatch.setitem(ZOO, entry.name, dataclasses.replace(entry, url_path=f"pretrain_models/{path.name}"))
    monkeypatch.setenv(ENV_MIRROR, weights_server.url)
    cfg = build.compose("train", [f"model.pretrained={entry.name}"], experiment=EXPERIMENT)
    built = build.build_model(cfg.model)
    assert all(torch.equal(built.state_dict()[k], v) for k, v in backbone.items())
    with pytest.raises(ValueError, match="checkpoint= / weights="):
        build.build_model(OmegaConf.merge(cfg.model, {"pretrained": "higherhrnet_w32_coco_512"}))

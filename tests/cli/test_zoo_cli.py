"""Pretrained models by name on the command lines: ``python -m bottomup.zoo``, ``infer --weights``, ``export
--weights``, ``evaluate weights=`` / ``train checkpoint=`` (offline: files served from 127.0.0.1 or none)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import biased_quickstart_network

from bottomup import build
from bottomup.core.download import file_sha256
from bottomup.models.zoo import ENV_MIRROR, ZOO, ZooEntry
from bottomup.zoo import main as zoo_main

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture
def served(weights_server, monkeypatch, tmp_path) -> tuple[ZooEntry, Path]:
    """The quickstart's network (heatmap biases that find people) as an official-layout file, served under a zoo
    name through ``$BOTTOMUP_WEIGHTS_MIRROR``: ``(entry, the same file on disk)``."""
    model = biased_quickstart_network()
    local = tmp_path / "local.pth"
    torch.save(model.state_dict(), local)
    digest = file_sha256(local)
    file = f"test_w16-{digest[:8]}_20250101.pth"
    (weights_server.root / "bottom_up").mkdir()
    (weights_server.root / "bottom_up" / file).write_bytes(local.read_bytes())
    entry = ZooEntry(
        name="test_w16_synthetic_160", kind="pose", file=file, layout="official", experiment="quickstart", width=16,
        url_path=f"bottom_up/{file}", sha256=None, sha256_prefix=digest[:8], ap=None, ap_multiscale=None,
        benchmark="test", source="this test", input_size=160, size_mb=1.0, licence="test",
    )  # fmt: skip
    monkeypatch.setitem(ZOO, entry.name, entry)
    monkeypatch.setenv(ENV_MIRROR, weights_server.url)
    return entry, local


def test_listing_names_every_model_with_its_published_ap_and_cache_state(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOTTOMUP_CACHE", str(tmp_path))
    cached = ZOO["higherhrnet_w32_coco_512"].cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x" * 3_000_000)
    assert zoo_main([]) == 0
    out = capsys.readouterr().out
    for name in ZOO:
        assert name in out
    line = next(row for row in out.splitlines() if row.startswith("higherhrnet_w32_coco_512 "))
    assert "0.677 (0.706 multi-scale)" in line and "COCO val2017" in line and "3 MB" in line and " yes " in line
    line = next(row for row in out.splitlines() if row.startswith("swahr_w32_coco_512 "))
    assert "0.689" in line and "~115 MB" in line and " no " in line and "by hand" in line
    assert "not reproduced here" in out and str(tmp_path / "weights") in out


def test_where_and_download_say_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOTTOMUP_CACHE", str(tmp_path))
    assert zoo_main(["--where", "swahr_w32_coco_512"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "weights" / "swahr_w32_coco_512" / "pose_higher_hrnet_w32_512.pth") in out
    assert "drive.google.com" in out and "experiment=swahr_w32" in out
    assert zoo_main(["--download", "hrnet_w32_imagenet", "--no-progress"]) == 1  # offline in the test suite
    err = capsys.readouterr().err
    assert "https://download.openmmlab.com/mmpose/pretrain_models/hrnet_w32-36af842e.pth" in err
    assert "starting with 36af842e" in err and str(ZOO["hrnet_w32_imagenet"].cache_path()) in err
    assert zoo_main(["--where", "higherhrnet_w32"]) == 2
    assert "python -m bottomup.zoo" in capsys.readouterr().err


def test_infer_with_a_name_finds_the_people_of_the_file(served, tmp_path, capsys):
    from bottomup.infer import main as infer_main

    entry, local = served
    image = tmp_path / "people.jpg"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8))
    common = [str(image), "--no-render", "--no-progress", "--exist-ok"]
    assert infer_main([*common, "--weights", entry.name, "--output-dir", str(tmp_path / "a")]) == 0
    assert f"weights {entry.name}: pretrained {entry.name}" in capsys.readouterr().err
    assert entry.cache_path().is_file()
    assert infer_main([*common, "--checkpoint", str(local), "--experiment", "quickstart", "--output-dir",
                       str(tmp_path / "b")]) == 0  # fmt: skip
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in "ab")
    assert a and [p["keypoints"] for p in a] == [p["keypoints"] for p in b]
    wrong = [*common, "--output-dir", str(tmp_path / "c")]
    assert infer_main([*wrong, "--weights", entry.name, "--checkpoint", str(local)]) == 2
    assert "--checkpoint not with it" in capsys.readouterr().err
    assert infer_main([*wrong, "--weights", "higherhrnet_w32_coco51"]) == 2
    assert "did you mean higherhrnet_w32_coco_512" in capsys.readouterr().err


def test_export_with_a_name(served, tmp_path):
    pytest.importorskip("onnx")
    from bottomup.export import main as export_main

    entry, _ = served
    out = tmp_path / "w16.onnx"
    assert export_main(["--weights", entry.name, str(out), "--exporter", "torchscript", "--input-size", "128"]) == 0
    meta = json.loads(out.with_name("w16.onnx.json").read_text())
    assert meta["source"] == entry.name and entry.name in meta["summary"]
    assert export_main(["--weights", entry.name, "--experiment", "quickstart"]) == 2


def test_evaluate_with_a_name_offline_says_where_the_file_goes(coco_root, tmp_path):
    """``python -m bottomup.evaluate weights=NAME``: its experiment comes with the name; offline and not cached, the
    run stops (exit 2) with the URL, the checksum and the path to put the file in."""
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "bottomup.evaluate", "weights=higherhrnet_w48_coco_512", f"data.root={coco_root}"],
        cwd=tmp_path, env=_env(BOTTOMUP_CACHE=str(cache), BOTTOMUP_OFFLINE="1"), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "https://download.openmmlab.com/mmpose/bottom_up/higher_hrnet48_coco_512x512-60fedcbc_20200712.pth" in out
    path = cache / "weights" / "higherhrnet_w48_coco_512" / "higher_hrnet48_coco_512x512-60fedcbc_20200712.pth"
    assert str(path) in out and "starting with 60fedcbc" in out
    runs = [p.name for p in (tmp_path / "outputs" / "eval").iterdir()]
    assert runs == ["coco_higherhrnet_w48"]  # the name brought its experiment (model group) along
    assert "experiment=higherhrnet_w48 added to the command line" in proc.stderr


def test_train_fine_tunes_from_a_name(served, coco_root, tmp_path):
    """``python -m bottomup.train checkpoint=NAME``: the run starts from the downloaded weights (lr 0 keeps them)."""
    from bottomup.api import train
    from bottomup.engine.checkpoint import load_checkpoint

    entry, local = served
    cfg = build.compose("train", [
        f"checkpoint={entry.name}", f"data.root={coco_root}", "data=coco", f"output_dir={tmp_path / 'run'}",
        "data.batch_size=2", "data.input_size=128", "data.num_workers=0", "trainer.epochs=1",
        "trainer.steps_per_epoch=1",
        "trainer.eval_every=0", "trainer.progress=false", "optim.lr=0", "schedule.warmup_iters=0",
    ], experiment="quickstart")  # fmt: skip
    summary = train(cfg)
    trained = load_checkpoint(summary["last"])["model"]
    given = torch.load(local, weights_only=True)
    params = [k for k in given if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert params and all(torch.equal(trained[k], given[k]) for k in params)
    assert entry.cache_path().is_file()


def test_train_with_a_name_gets_its_experiment():
    from bottomup.train import _with_zoo_overrides

    assert _with_zoo_overrides(["checkpoint=hrnet_w48_ae_coco_512", "data.root=/d"]) == [
        "checkpoint=hrnet_w48_ae_coco_512", "data.root=/d", "experiment=hrnet_w48_ae"]  # fmt: skip
    assert _with_zoo_overrides(["checkpoint=hrnet_w48_ae_coco_512", "experiment=quickstart"])[-1] == (
        "experiment=quickstart")  # fmt: skip


def test_nothing_is_downloaded_or_imported_for_downloads_at_import():
    code = (
        "import sys, bottomup.api, bottomup.models.zoo, bottomup.build, bottomup.zoo; "
        "print(sorted(m for m in ('pooch', 'requests') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"

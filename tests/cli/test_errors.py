"""Failure cases through the command lines and the API: non-finite states, resumes, broken data, bad options.

Each test provokes one case, then checks the message (file or key named, the fix), the exit status, and that
nothing good on disk was replaced.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import keypoint_dataset
from omegaconf import OmegaConf

from bottomup.api import train
from bottomup.build import compose
from bottomup.data import KeypointDataset
from bottomup.engine.checkpoint import CheckpointError, CheckpointWriteError, load_checkpoint, save_checkpoint
from bottomup.engine.evaluator import coco_keypoint_eval

REPO = Path(__file__).resolve().parents[2]
SMALL = [
    "model.width=8", "data.input_size=128", "data.batch_size=2", "data.num_workers=0", "trainer.progress=false",
    "trainer.steps_per_epoch=2",
]  # fmt: skip


def _cfg(coco_root: Path, out: Path, *extra: str):
    return compose(
        "train", ["experiment=higherhrnet_w32", f"data.root={coco_root}", f"output_dir={out}", *SMALL, *extra]
    )


def _cli(module: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def _finite(checkpoint: dict) -> bool:
    return all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())


# ------------------------------------------------------------------ 1. a non-finite state is never saved
@pytest.mark.slow
def test_non_finite_weights_never_replace_the_good_checkpoint(coco_root: Path, tmp_path: Path) -> None:
    """The issue's recipe (with the official init it was written for): the LR jumps x1e10 at epoch 1; epoch 2
    ends with NaN in the weights."""
    run_dir = tmp_path / "run"
    proc = _cli(
        "bottomup.train", "experiment=higherhrnet_w32", f"data.root={coco_root}", *SMALL, "trainer.epochs=2",
        "schedule.milestones=[1]", "schedule.gamma=1e10", "model.init=official", f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out[-3000:]
    assert "non-finite" in out and "nothing was saved" in out, out[-3000:]
    assert f"{run_dir / 'last.pt'} is unchanged (written after 1 epoch, step 2)" in out and "resume=" in out, out[
        -3000:
    ]
    last = load_checkpoint(run_dir / "last.pt")
    assert (last["epoch"], last["step"]) == (1, 2) and _finite(last)


def test_a_huge_but_finite_step_never_leaves_a_non_finite_checkpoint(coco_root: Path, tmp_path: Path) -> None:
    """The issue's second recipe (gamma=1e9 used to end with exit 0 and a non-finite tensor in last.pt): whether
    the run ends or stops, every tensor of every checkpoint on disk is finite."""
    from bottomup.engine.trainer import NonFiniteLossError

    cfg = _cfg(coco_root, tmp_path, "trainer.epochs=2", "schedule.milestones=[1]", "schedule.gamma=1e9",
               "model.init=official")  # fmt: skip
    try:
        train(cfg)
    except NonFiniteLossError as e:
        assert "nothing was saved" in str(e)
    for name in ("last.pt", "best.pt"):
        if (tmp_path / name).exists():
            ckpt = load_checkpoint(tmp_path / name)
            moments = [v for st in ckpt["optimizer"]["state"].values() for v in st.values() if torch.is_tensor(v)]
            assert _finite(ckpt) and all(torch.isfinite(m).all() for m in moments), name
    assert (tmp_path / "last.pt").exists()


# ------------------------------------------------------------------ 2. resume applies the command line
def test_resume_applies_a_changed_learning_rate(coco_root: Path, tmp_path: Path, caplog) -> None:
    first = train(_cfg(coco_root, tmp_path, "trainer.epochs=1"))
    (tmp_path / ".last.pt.stale123.tmp").write_bytes(b"half a checkpoint")  # 6. left by a kill mid-write
    resumed = _cfg(coco_root, tmp_path / "unused", "trainer.epochs=2", "optim.lr=0.01", f"resume={first['last']}")
    with caplog.at_level("INFO", logger="bottomup.train"):
        train(resumed)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 4
    schedule = resumed.schedule  # warm-up over 500 iterations from x0.001: the factor after 4 steps
    factor = schedule.warmup_factor + (1 - schedule.warmup_factor) * 4 / schedule.warmup_iters
    assert ckpt["scheduler"]["base_lrs"] == [0.01]
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01 * factor)
    assert OmegaConf.create(ckpt["config"]).optim.lr == 0.01  # the saved config is what ran
    assert "optim.lr: 0.0015 -> 0.01" in caplog.text
    assert not list(tmp_path.glob(".*.tmp")) and "interrupted checkpoint write" in caplog.text


def test_resume_refuses_other_checkpoints_in_one_line(coco_root: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw.pth"
    torch.save({"conv.weight": torch.zeros(1)}, raw)
    with pytest.raises(CheckpointError, match=r"not a training checkpoint of this project \(no model, optimizer"):
        train(_cfg(coco_root, tmp_path, "trainer.epochs=1", f"resume={raw}"))
    wide = train(_cfg(coco_root, tmp_path / "w12", "trainer.epochs=1", "model.width=12"))
    with pytest.raises(
        CheckpointError, match=r"does not fit the model of the config: \d+ tensors of other shapes"
    ) as e:
        train(_cfg(coco_root, tmp_path / "w8", "trainer.epochs=2", f"resume={wide['last']}"))
    assert "size mismatch" not in str(e.value) and len(str(e.value)) < 500
    assert "the file is W12, K=17, the config builds W8, K=17" in str(e.value)


# ------------------------------------------------------------------ 3-4. broken annotation files are refused
def _write(data: dict, path: Path) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def coco_train(coco_root: Path) -> dict:
    return json.loads((coco_root / "annotations" / "person_keypoints_train2017.json").read_text())


def _dataset(coco_root: Path, ann: Path, coco_layout) -> KeypointDataset:
    return keypoint_dataset(
        ann, coco_root / "train2017", coco_layout.keypoint_names, [list(p) for p in coco_layout.flip_pairs],
        input_size=128,
    )  # fmt: skip


def test_repeated_ids_are_refused(coco_root, coco_train, coco_layout, tmp_path) -> None:
    data = copy.deepcopy(coco_train)
    data["images"][1]["id"] = data["images"][0]["id"]
    ann = _write(data, tmp_path / "dup_images.json")
    with pytest.raises(ValueError, match=rf"{ann}.*image ids {data['images'][0]['id']} appear more than once"):
        _dataset(coco_root, ann, coco_layout)
    data = copy.deepcopy(coco_train)
    data["annotations"][1]["id"] = data["annotations"][0]["id"]
    with pytest.raises(ValueError, match="annotation ids .* appear more than once"):
        _dataset(coco_root, _write(data, tmp_path / "dup_anns.json"), coco_layout)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("x", float("nan"), "is not finite"),
        ("x", float("inf"), "is not finite"),
        ("v", 3, "visibility 3"),
        ("v", -1, "visibility -1"),
        ("x", -5.0, "negative coordinate"),
        ("bbox", [10.0, 10.0, 0.0, 20.0], "'bbox'"),
        ("area", 0.0, "'area' 0.0"),
    ],
)
def test_impossible_keypoints_and_boxes_are_refused_by_training_and_evaluation(
    coco_root, coco_train, coco_layout, tmp_path, field, value, message
) -> None:
    val = json.loads((coco_root / "annotations" / "person_keypoints_val2017.json").read_text())
    for name, data in (("train", copy.deepcopy(coco_train)), ("val", val)):
        ann = next(a for a in data["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd"))
        j = next(j for j in range(17) if ann["keypoints"][3 * j + 2] > 0)
        if field in ("bbox", "area"):
            ann[field] = value
        else:
            ann["keypoints"][3 * j + (0 if field == "x" else 2)] = value
        path = tmp_path / f"{name}_{field}.json"
        path.write_text(json.dumps(data, allow_nan=True))
        pattern = rf"{path}.*annotation id {ann['id']}.*{message}"
        if name == "train":
            with pytest.raises(ValueError, match=pattern):
                _dataset(coco_root, path, coco_layout)
        else:  # a NaN keypoint used to turn AP 0.0 into 0.13
            result = [{"image_id": ann["image_id"], "category_id": 1, "keypoints": [1.0] * 51, "score": 0.5}]
            with pytest.raises(ValueError, match=pattern):
                coco_keypoint_eval(result, path, oks_sigmas=coco_layout.oks_sigmas)


def test_an_image_of_another_size_than_its_record_is_skipped(coco_root, coco_train, coco_layout, tmp_path, caplog):
    data = copy.deepcopy(coco_train)
    first_id = _dataset(coco_root, _write(data, tmp_path / "as_is.json"), coco_layout).image_ids[0]
    record = next(img for img in data["images"] if img["id"] == first_id)
    record["height"] += 7
    ds = _dataset(coco_root, _write(data, tmp_path / "size.json"), coco_layout)
    with caplog.at_level("WARNING"):
        assert ds[0] is None  # skipped like an unreadable image (counted in the epoch's "skipped")
    assert "annotations are not in this image's frame" in caplog.text and record["file_name"] in caplog.text


def test_a_crowd_rle_of_another_size_than_its_image_names_the_annotation(coco_root, coco_train, coco_layout, tmp_path):
    """A crowd region's RLE ``size`` that disagrees with its image used to end in a bare NumPy broadcasting error
    in the middle of an epoch: refused when the file is read, naming the file, both ids and both sizes; with no
    size in the image record, when the image's mask is made."""
    data = copy.deepcopy(coco_train)
    crowd = next(a for a in data["annotations"] if a.get("iscrowd") and isinstance(a["segmentation"], dict))
    record = next(img for img in data["images"] if img["id"] == crowd["image_id"])
    height, width = record["height"], record["width"]
    crowd["segmentation"]["size"] = [height + 1, width]
    ann = _write(data, tmp_path / "rle.json")
    with pytest.raises(ValueError) as e:
        _dataset(coco_root, ann, coco_layout)
    assert str(e.value) == (
        f"annotation file {ann}: annotation id {crowd['id']} (image id {crowd['image_id']}): its segmentation RLE "
        f"has 'size' [{height + 1}, {width}] ([height, width]) but its image record says [{height}, {width}] "
        f"(height {height}, width {width}); fix the RLE or the image record"
    )
    del record["height"], record["width"]  # the size comes from the image file then
    ds = _dataset(coco_root, _write(data, tmp_path / "rle_no_size.json"), coco_layout)
    with pytest.raises(ValueError) as e:
        ds.source.people(crowd["image_id"], height, width)
    assert str(e.value) == (
        f"annotation file {tmp_path / 'rle_no_size.json'}: annotation id {crowd['id']} (image id "
        f"{crowd['image_id']}): its segmentation RLE has 'size' [{height + 1}, {width}] ([height, width]) but the "
        f"image is [{height}, {width}] (height {height}, width {width})"
    )
    index = ds.image_ids.index(crowd["image_id"])
    with pytest.raises(ValueError, match=rf"annotation id {crowd['id']} \(image id {crowd['image_id']}\)"):
        ds[index]  # the training sample: the same message


# ------------------------------------------------------------------ 5. options out of range
@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--scales", "100"], "scales"),
        (["--scales", "0.001"], "scales"),
        (["--scales", "nan"], "scales"),
        (["--min-score", "5"], "--min-score must be in [0, 1]"),
        (["--min-score", "-3"], "--min-score must be in [0, 1]"),
        (["--min-score", "nan"], "--min-score must be in [0, 1]"),
        (["--detection-threshold", "2"], "detection_threshold must be in [0, 1]"),
    ],
)
def test_infer_refuses_options_out_of_range(
    quickstart_checkpoint, coco_root, tmp_path, capsys, option, message
) -> None:
    from bottomup.infer import main

    image = sorted((coco_root / "val2017").glob("*.jpg"))[0]
    argv = [str(image), "--checkpoint", str(quickstart_checkpoint), "--output-dir", str(tmp_path), *option]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "cannot use checkpoint" not in err, err  # the option is wrong, not the file
    assert not (tmp_path / "results.json").exists()


def test_infer_output_dir_that_is_a_file_is_a_usage_error(coco_root, tmp_path, capsys) -> None:
    from bottomup.infer import main

    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    image = sorted((coco_root / "val2017").glob("*.jpg"))[0]
    assert main([str(image), "--output-dir", str(blocker / "out"), "--no-progress"]) == 2
    assert "--output-dir" in capsys.readouterr().err and blocker.read_text() == "keep me"


def test_config_counts_name_their_key(coco_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.batch_size must be >= 1"):
        train(_cfg(coco_root, tmp_path, "data.batch_size=0"))
    with pytest.raises(ValueError, match=r"trainer\.steps_per_epoch must be >= 1"):
        train(_cfg(coco_root, tmp_path, "trainer.steps_per_epoch=0"))
    proc = _cli("bottomup.train", "experiment=higherhrnet_w32", f"data.root={coco_root}", *SMALL,
                "data.batch_size=0", f"hydra.run.dir={tmp_path / 'cli'}")  # fmt: skip
    assert proc.returncode == 2 and "data.batch_size must be >= 1" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


# ------------------------------------------------------------------ 7. checkpoint messages
def test_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}}, path)

    def full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointWriteError) as e:
        save_checkpoint({"model": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    message = str(e.value)
    assert str(path) in message and "no space left" in message and "MiB free" in message
    assert "the previous last.pt is intact" in message and isinstance(e.value, OSError)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_unloadable_checkpoints_say_why_without_unsafe_advice(tmp_path: Path) -> None:
    empty = tmp_path / "zero.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"zero\.pt: the file is empty \(0 bytes\)"):
        load_checkpoint(empty)

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": Payload()}, evil)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(evil)
    assert str(evil) in str(e.value) and "could run code" in str(e.value)
    assert "weights_only=False" not in str(e.value) and "`weights_only` set to `False`" not in str(e.value)

    class System:  # the classic exploit; refused by name like any other global
        def __reduce__(self):
            return (os.system, ("exit 0",))

    torch.save({"model": {}, "x": System()}, evil)
    with pytest.raises(CheckpointError, match=r"evil\.pt: it holds Python objects .*system.*could run code"):
        load_checkpoint(evil)
    from bottomup.api import PoseEstimator

    with pytest.raises(CheckpointError, match="evil.pt"):
        PoseEstimator.from_checkpoint(evil)


def test_a_run_folder_given_as_a_checkpoint_names_the_files_in_it(coco_root: Path, tmp_path: Path, capsys) -> None:
    """``resume=`` / ``checkpoint=`` / ``--checkpoint`` given a run's folder said "checkpoint not found" although the
    folder exists: the message says it is a folder and names the last.pt / best.pt in it."""
    from bottomup.export import main as export_main
    from bottomup.infer import main as infer_main

    run = tmp_path / "run"
    for name in ("last.pt", "best.pt"):
        save_checkpoint({"model": {"w": torch.ones(1)}}, run / name)
    inside = (
        f"is a folder, not a checkpoint file: pass the checkpoint in it, {run / 'last.pt'} (the latest epoch, what "
        f"resume= continues) or {run / 'best.pt'} (the best validation AP)"
    )
    out = tmp_path / "out"
    with pytest.raises(CheckpointError) as e:
        train(_cfg(coco_root, out, "trainer.epochs=1", f"resume={run}"))
    assert str(e.value) == f"resume={run} {inside}"
    with pytest.raises(CheckpointError) as e:
        train(_cfg(coco_root, out, "trainer.epochs=1", f"checkpoint={run}"))
    assert str(e.value) == f"checkpoint={run} {inside}"
    assert not list(out.glob("*.pt"))
    image = sorted((coco_root / "val2017").glob("*.jpg"))[0]
    assert infer_main([str(image), "--checkpoint", str(run), "--output-dir", str(out), "--no-progress"]) == 2
    assert f"--checkpoint {run} {inside}" in capsys.readouterr().err
    assert export_main([str(run)]) == 2
    assert f"error: checkpoint {run} {inside}" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"empty is a folder, not a checkpoint file, and holds no last\.pt"):
        load_checkpoint(empty)
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt"]


def test_a_model_of_another_k_points_to_the_data_config(coco_root: Path, tmp_path: Path) -> None:
    from bottomup.build import build_model, evaluate_model

    cfg = compose("train", [f"data.root={coco_root}", "model.width=4", "data.input_size=128"])
    model = build_model(compose("train", ["data=crowdpose", "data.root=/x", "model.width=4"]).model)
    with pytest.raises(ValueError, match="predicts 14 keypoints but data config 'coco' has 17.*data=crowdpose"):
        evaluate_model(model, cfg, device="cpu", max_images=1, output_json=tmp_path / "r.json", progress=False)


# ------------------------------------------------------------------ 8. a hung rank ends the run
def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")  # one torchrun rendezvous at a time
def test_dist_timeout_ends_a_run_with_a_frozen_rank(coco_root: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes; rank 1 is frozen with SIGSTOP once training runs: rank 0 must give up after
    trainer.dist_timeout (not the default 30 minutes), with one line saying so and what is on disk."""
    import signal
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "bottomup.train",
        "experiment=higherhrnet_w32", f"data.root={coco_root}", *SMALL, "trainer.steps_per_epoch=500",
        "trainer.device=cpu", "trainer.dist_timeout=10", f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, frozen = [], None
    try:
        for line in proc.stdout:
            lines.append(line)
            if frozen is None and "training HigherHRNet" in line:
                for pid in _children(proc.pid):
                    if _environ(pid).get("RANK") == "1":
                        os.kill(pid, signal.SIGSTOP)
                        frozen, t0 = pid, time.monotonic()
        proc.wait(timeout=300)
    finally:
        if frozen is not None and Path(f"/proc/{frozen}").exists():
            os.kill(frozen, signal.SIGKILL)
        proc.kill()
    out = "".join(lines)
    assert frozen is not None, out[-3000:]
    assert proc.returncode != 0, out[-3000:]
    assert "did not answer for trainer.dist_timeout=10 s" in out and "last.pt" in out, out[-3000:]
    assert time.monotonic() - t0 < 200  # not the default 1800 s
    with pytest.raises(ValueError, match="trainer.dist_timeout"):
        from bottomup.engine.distributed import init_distributed

        init_distributed("cpu", timeout_s=0)


def test_unreadable_pretrained_backbone_names_the_key(tmp_path: Path) -> None:
    from bottomup.models import HigherHRNet

    bad = tmp_path / "hrnet_w32.pth"
    bad.write_bytes(b"not weights")
    with pytest.raises(ValueError, match=rf"model\.pretrained='{bad}'") as e:
        HigherHRNet(width=4, pretrained=str(bad))
    assert "weights_only" not in str(e.value)  # torch's advice to load it unsafely is not repeated
    # through the config (Hydra's instantiate), the same ValueError, which the entry points turn into exit 2
    from bottomup.build import build_model

    cfg = compose("train", ["data.root=/x", "model.width=4", f"model.pretrained={bad}"])
    with pytest.raises(ValueError, match=rf"model\.pretrained='{bad}'"):
        build_model(cfg.model)

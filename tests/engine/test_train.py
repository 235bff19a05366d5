"""The training loop on real coco-mini images: learning, resume, DDP, checkpoints and bad input."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from bottomup.api import train
from bottomup.build import build_model, build_optimizer, build_train_dataset
from bottomup.data.dataset import KeypointDataset
from bottomup.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from bottomup.engine.trainer import NonFiniteLossError

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
# A narrow HigherHRNet at input 128 keeps a step well under a second on 2 CPU cores.
SMALL = ["model.width=8", "data.input_size=128", "data.batch_size=2", "data.num_workers=0", "trainer.progress=false"]


def small_cfg(coco_root: Path, out: Path, *extra: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=["experiment=higherhrnet_w32", f"data.root={coco_root}", f"output_dir={out}", *SMALL, *extra],
        )


def test_a_few_steps_on_one_real_batch_reduce_the_loss(coco_root: Path) -> None:
    torch.manual_seed(0)
    cfg = small_cfg(coco_root, Path("/tmp/unused"))
    dataset = build_train_dataset(cfg.data, cfg.model.strides, train=False)
    batch = [dataset[i] for i in range(2)]
    model = build_model(cfg.model, 17)
    from bottomup.data import collate
    from bottomup.models.losses import AssociativeEmbeddingLoss

    b = collate(batch)
    crit = AssociativeEmbeddingLoss(17)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        parts = crit(model(b["image"]), b["heatmaps"], b["masks"], b["tag_indices"])
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        losses.append(parts["loss"].item())
    assert max(losses[-3:]) < 0.8 * losses[0], losses


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_resume_continues_exactly(coco_root: Path, tmp_path: Path) -> None:
    common = ["trainer.steps_per_epoch=2", "schedule.warmup_iters=3"]
    full = train(small_cfg(coco_root, tmp_path / "full", "trainer.epochs=2", *common))
    assert full["step"] == 4
    first = train(small_cfg(coco_root, tmp_path / "part", "trainer.epochs=1", *common))
    assert first["step"] == 2
    resumed = train(
        small_cfg(coco_root, tmp_path / "other", "trainer.epochs=2", f"resume={tmp_path / 'part' / 'last.pt'}", *common)
    )
    assert resumed["start_step"] == 2 and resumed["step"] == 4
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "part" / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    ckpt = load_checkpoint(tmp_path / "part" / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["step"] == 4 and "optimizer" in ckpt and "data" in ckpt["config"]
    assert list((tmp_path / "part" / "tb").glob("events.out.tfevents.*"))


def test_resume_after_max_steps_continues_inside_the_epoch(
    coco_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run cut by ``trainer.max_steps`` inside an epoch and resumed trains the samples ``(index, epoch)`` of an
    uninterrupted run, in its order and each once, and ends with its weights."""
    seen: list[tuple[int, int]] = []
    getitem = KeypointDataset.__getitem__

    def recording(self: KeypointDataset, index: int | tuple[int, int]) -> dict | None:
        if isinstance(index, tuple):  # the training sampler's (index, epoch)
            seen.append((int(index[0]), int(index[1])))
        return getitem(self, index)

    monkeypatch.setattr(KeypointDataset, "__getitem__", recording)
    tiny = ["model.stage_modules=[1,1,1]", "model.blocks_per_branch=1", "model.stem_blocks=1"]
    common = [*tiny, "data.input_size=64", "trainer.epochs=2", "trainer.steps_per_epoch=2", "schedule.warmup_iters=3"]
    train(small_cfg(coco_root, tmp_path / "full", *common))
    uninterrupted = list(seen)
    assert len(uninterrupted) == 8 and len(set(uninterrupted)) == 8  # 2 epochs x 2 batches x 2 images
    seen.clear()
    assert train(small_cfg(coco_root, tmp_path / "cut", *common, "trainer.max_steps=3"))["step"] == 3
    ckpt = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"], ckpt["batch"]) == (1, 3, 1)  # 1 batch of epoch 1 trained
    resumed = train(small_cfg(coco_root, tmp_path / "other", *common, f"resume={tmp_path / 'cut' / 'last.pt'}"))
    assert seen == uninterrupted
    assert resumed["start_step"] == 3 and resumed["step"] == 4
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    ckpt = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"], ckpt["batch"]) == (2, 4, 0)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(coco_root: Path, tmp_path: Path) -> None:
    # step 1 runs at lr 1.5e-3 (warm-up start); from step 2 on the lr is 1e30 and the loss overflows.
    blow_up = ["optim.lr=1e30", "schedule.warmup_iters=1", "schedule.warmup_factor=1.5e-33"]
    cfg = small_cfg(coco_root, tmp_path, "trainer.epochs=5", "trainer.steps_per_epoch=1", *blow_up)
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        train(cfg)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert 1 <= ckpt["epoch"] < 5 and ckpt["step"] == ckpt["epoch"]  # written before the bad step only
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_missing_root_and_annotation_are_named(coco_root: Path, tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"output_dir={tmp_path}", *SMALL])
    with pytest.raises(ValueError, match="data.root is not set"):
        train(cfg)
    with pytest.raises(FileNotFoundError, match="data.root"):
        train(small_cfg(tmp_path / "nowhere", tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="person_keypoints_train2017.json"):
        train(small_cfg(tmp_path / "empty", tmp_path))


def test_checkpoint_write_is_atomic_under_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}}, path)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"model": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_checkpoint_survives_kill_mid_write(tmp_path: Path) -> None:
    """SIGKILL a process that keeps rewriting a large last.pt: the file on disk always loads."""
    path = tmp_path / "last.pt"
    code = (
        "import torch, sys; from bottomup.engine.checkpoint import save_checkpoint\n"
        "i = 0\n"
        "while True:\n"
        "    save_checkpoint({'model': {'w': torch.full((4_000_000,), float(i))}, 'step': i}, sys.argv[1])\n"
        "    i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
    try:
        deadline = time.time() + 60
        while not path.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    ckpt = load_checkpoint(path)
    assert ckpt["model"]["w"].shape == (4_000_000,)
    assert torch.all(ckpt["model"]["w"] == ckpt["step"])


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")  # one torchrun rendezvous at a time
def test_torchrun_two_processes_gloo_cpu(coco_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "bottomup.train", "experiment=higherhrnet_w32", f"data.root={coco_root}", *SMALL,
        "trainer.epochs=1", "trainer.steps_per_epoch=2", "trainer.device=cpu", "trainer.sync_bn=true",
        "trainer.eval_every=1", "trainer.eval_max_images=6", f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 2 and ckpt["epoch"] == 1
    assert not any(k.startswith("module.") for k in ckpt["model"])
    # in-training evaluation over both ranks (issue 29): rank 0 wrote the people of all 6 images and the AP
    log = res.stderr + res.stdout
    assert "epoch 0: val AP" in log and " people in 6 images -> " in log, log[-3000:]
    assert (tmp_path / "results_val.json").is_file() and (tmp_path / "best.pt").is_file()


def test_tensorboard_gets_scalars_and_pictures(coco_root: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(small_cfg(coco_root, tmp_path, "trainer.epochs=1", "trainer.steps_per_epoch=2", "trainer.image_every=2",
                  "trainer.log_every=1"))  # fmt: skip
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars, images = set(acc.Tags()["scalars"]), set(acc.Tags()["images"])
    assert {"train/loss", "train/heatmap/0", "train/heatmap/1", "train/pull", "train/push", "train/lr"} <= scalars
    assert {"train/skeletons", "train/heatmaps", "train/tags"} <= images
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    pic = acc.Images("train/heatmaps")[0]
    assert pic.width > 0 and pic.height > 0


def test_training_pictures_with_a_folded_bf16_test_config(coco_root: Path, tmp_path: Path) -> None:
    """``test.fold_bn=true test.precision=bf16 trainer.image_every=N``: the snapshot runs the folded bf16 copy (it
    used to fail with 'Input type (float) and bias type (BFloat16) should be the same')."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(small_cfg(coco_root, tmp_path, "trainer.epochs=1", "trainer.steps_per_epoch=1", "trainer.image_every=1",
                    "test.fold_bn=true", "test.precision=bf16"))  # fmt: skip
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    assert {"train/skeletons", "train/heatmaps", "train/tags"} <= set(acc.Tags()["images"])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_and_channels_last_train(coco_root: Path, tmp_path: Path, precision: str) -> None:
    summary = train(
        small_cfg(coco_root, tmp_path, "trainer.epochs=1", "trainer.steps_per_epoch=2", f"trainer.precision={precision}",
                  "trainer.channels_last=true", "trainer.grad_clip=1.0")
    )  # fmt: skip
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert summary["step"] == 2 and all(
        torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point()
    )
    assert (ckpt["scaler"] is not None) == (precision == "fp16")  # GradScaler state saved for fp16 only


def test_bf16_loss_curve_matches_fp32_on_a_real_batch(coco_root: Path) -> None:
    """bf16 autocast + channels_last follows the fp32 loss curve within 2 % for 10 steps on one real batch.

    The steps are the configured training recipe (``cfg.optim`` Adam 1.5e-3, ``cfg.schedule`` warm-up from
    x0.001), from the official init. Measured (W16, input 256, batch 2): the loss falls to 0.61x; bf16 stays
    within 0.83 % of fp32 on 2 threads (1.28 % on 1), fp32 channels_last within 0.7-1.0 %.

    Without the warm-up (a fixed Adam LR of 1e-4 from step 1) the curves are chaotic: even fp32 channels_last
    parts from fp32 contiguous by 3 % at step 2 on W32, so no precision could be held to 2 % there.
    """
    from bottomup.data import collate
    from bottomup.models.losses import AssociativeEmbeddingLoss

    cfg = small_cfg(coco_root, Path("/tmp/unused"), "model.width=16", "data.input_size=256", "model.init=official")
    dataset = build_train_dataset(cfg.data, cfg.model.strides, train=False)
    b = collate([dataset[i] for i in range(2)])
    crit = AssociativeEmbeddingLoss(17)
    curves = {}
    for name, precision, channels_last in (("fp32", "fp32", False), ("fp32_cl", "fp32", True), ("bf16", "bf16", True)):
        torch.manual_seed(0)
        model = build_model(cfg.model, 17)
        image = b["image"]
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            image = image.contiguous(memory_format=torch.channels_last)
        opt, scheduler = build_optimizer(cfg.optim, cfg.schedule, model, iters_per_epoch=1000)
        curve = []
        for _ in range(10):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                outputs = model(image)
            parts = crit([o.float() for o in outputs], b["heatmaps"], b["masks"], b["tag_indices"])
            opt.zero_grad()
            parts["loss"].backward()
            opt.step()
            scheduler.step()
            curve.append(parts["loss"].item())
        curves[name] = torch.tensor(curve, dtype=torch.float64)
    ref = curves["fp32"]
    rel = (curves["bf16"] - ref).abs() / ref
    drift = ((curves["fp32_cl"] - ref).abs() / ref).max()
    print(f"loss vs fp32 over 10 steps, max relative difference: bf16 {rel.max():.2%}, fp32 channels_last {drift:.2%}")
    assert ref[-1] < 0.8 * ref[0], curves  # it is a learning curve, not a flat line
    assert rel[0] < 0.005, curves  # the same forward pass
    assert rel.max() < 0.02, (curves, rel, drift)


class FakeCuda:
    """``torch.cuda``'s random-state calls for ``count`` visible GPUs, this process on ``cuda:<current>``.

    Device ``i`` starts with the state ``[i] * 16``; ``sets`` records ``(device, state)`` for every state set and
    ``seeds`` ``(device, seed)`` for every ``manual_seed``. A device index >= ``count`` raises as CUDA does.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, count: int, current: int) -> None:
        self.count, self.current = count, current
        self.states = {i: torch.full((16,), i, dtype=torch.uint8) for i in range(count)}
        self.sets: list[tuple[int, torch.Tensor]] = []
        self.seeds: list[tuple[int, int]] = []
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "is_available", lambda: True)
        monkeypatch.setattr(cuda, "device_count", lambda: count)
        monkeypatch.setattr(cuda, "current_device", lambda: current)
        monkeypatch.setattr(cuda, "get_rng_state", lambda device="cuda": self.states[self._index(device)].clone())
        monkeypatch.setattr(cuda, "set_rng_state", self._set)
        monkeypatch.setattr(cuda, "get_rng_state_all", lambda: [self.states[i].clone() for i in range(count)])
        monkeypatch.setattr(cuda, "set_rng_state_all", lambda states: [self._set(s, i) for i, s in enumerate(states)])
        monkeypatch.setattr(cuda, "manual_seed", lambda seed: self.seeds.append((current, int(seed))))

    def _index(self, device: int | str | torch.device) -> int:
        index = device if isinstance(device, int) else torch.device(device).index
        index = self.current if index is None else index
        if index >= self.count:
            raise RuntimeError(f"CUDA error: invalid device ordinal {index} ({self.count} devices)")
        return index

    def _set(self, state: torch.Tensor, device: int | str | torch.device = "cuda") -> None:
        index = self._index(device)
        self.states[index] = state.clone()
        self.sets.append((index, state.clone()))


def test_cuda_rng_state_is_this_devices_and_resumes_on_fewer_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeCuda(monkeypatch, count=8, current=0)  # rank 0 of an 8-GPU run writes the checkpoint
    save_checkpoint({"rng": rng_state()}, tmp_path / "last.pt")
    saved = load_checkpoint(tmp_path / "last.pt")["rng"]
    assert isinstance(saved["cuda"], torch.Tensor), "only the state of the device in use is saved"
    torch.testing.assert_close(saved["cuda"], torch.zeros(16, dtype=torch.uint8), rtol=0, atol=0)
    fake = FakeCuda(monkeypatch, count=2, current=0)  # resumed with 2 GPUs visible
    set_rng_state(saved)
    assert [i for i, _ in fake.sets] == [0]
    torch.testing.assert_close(fake.states[0], saved["cuda"], rtol=0, atol=0)


def test_old_per_device_cuda_rng_list_restores_this_devices_entry_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    old = {**rng_state(), "cuda": [torch.full((16,), 100 + i, dtype=torch.uint8) for i in range(8)]}
    fake = FakeCuda(monkeypatch, count=2, current=1)  # one process on cuda:1 of 2
    set_rng_state(old)
    assert [i for i, _ in fake.sets] == [1]
    torch.testing.assert_close(fake.states[1], old["cuda"][1], rtol=0, atol=0)
    fake = FakeCuda(monkeypatch, count=4, current=3)  # a 2-GPU checkpoint, this process on cuda:3
    with caplog.at_level("WARNING", logger="bottomup.engine.checkpoint"):
        set_rng_state({**old, "cuda": old["cuda"][:2]})
    assert fake.sets == [] and fake.states[3][0] == 3
    assert "no CUDA random state for device 3" in caplog.text


def test_resumed_ranks_continue_rank0_or_draw_their_own_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """rank 0 continues the saved states exactly; other ranks (whose states the rank-0 checkpoint lacks) get
    streams of their own, distinct per rank and the same on every resume from that checkpoint."""
    torch.manual_seed(5)
    np.random.seed(5)  # noqa: NPY002 - the global generator is what checkpoints save
    random.seed(5)
    fake = FakeCuda(monkeypatch, count=4, current=0)
    saved = rng_state()

    def draws() -> tuple[list[float], list[float], float]:
        return torch.rand(4).tolist(), np.random.rand(4).tolist(), random.random()  # noqa: NPY002

    expected = draws()
    got = {}
    for rank in (0, 1, 2):
        fake = FakeCuda(monkeypatch, count=4, current=rank)  # DDP: rank r on cuda:r
        set_rng_state(saved, rank=rank)
        got[rank] = draws()
        if rank == 0:
            assert [i for i, _ in fake.sets] == [0] and fake.seeds == []
        else:
            assert fake.sets == [] and [i for i, _ in fake.seeds] == [rank]  # not rank 0's CUDA state
            set_rng_state(saved, rank=rank)
            assert draws() == got[rank]  # reproducible
            assert fake.seeds[0] == fake.seeds[1]
    assert got[0] == expected
    for a, b in ((0, 1), (0, 2), (1, 2)):
        for x, y in zip(got[a], got[b], strict=True):
            assert x != y, (a, b)


def test_auto_precision_trains_in_what_the_probe_measured(coco_root: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    """Issue 29: ``trainer.precision=auto`` on a CPU that reports bf16 times a training step of the network in fp32
    and bf16 and trains in the faster one (the flag alone said bf16, which was 1.5x slower on a Xeon without AMX);
    the log says what was measured and the checkpoint's config what ran (the cache: ``tests/models/test_model.py``)."""
    import json
    import logging

    from omegaconf import OmegaConf

    import bottomup.models.precision as precision

    monkeypatch.setenv("BOTTOMUP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)  # probe on every CPU kind
    caplog.set_level(logging.INFO, logger="bottomup.train")
    args = ("trainer.epochs=1", "trainer.steps_per_epoch=1", "trainer.precision=auto")
    train(small_cfg(coco_root, tmp_path / "a", *args))
    cache = json.loads((tmp_path / "cache" / "precision.json").read_text())
    (record,) = cache.values()
    assert set(record["timings_ms"]) == {"fp32", "bf16"} and record["correct"]["bf16"]
    assert record["precision"] == precision.pick_precision(record["timings_ms"], record["correct"])
    assert f"trainer.precision=auto: {record['precision']} on cpu (training step at 128 px: fp32 " in caplog.text
    ran = OmegaConf.create(load_checkpoint(tmp_path / "a" / "last.pt")["config"])
    assert ran.trainer.precision == record["precision"]


def test_a_vit_trains_in_bf16_resumes_evaluates_and_infers(coco_root: Path, tmp_path: Path) -> None:
    """The ViT model through the whole training path on real data: layer-decay AdamW, bf16 autocast, in-training
    evaluation, a resume that continues to the same weights as an uninterrupted run, then the checkpoint as a
    ``PoseEstimator`` on a real image (issue 27: everything downstream works with a ViT)."""
    import cv2

    from bottomup.api import PoseEstimator

    vit = [
        "model=vitpose_tiny_ae", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.neck_channels=16",
        "optim=adamw_layer_decay", "loss.heatmap_weights=[1.0]", "trainer.grad_clip=1.0", "trainer.precision=bf16",
        "trainer.steps_per_epoch=2", "schedule.warmup_iters=3", "trainer.eval_every=1", "trainer.eval_max_images=2",
    ]  # fmt: skip

    def cfg(out: str, *extra: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            overrides = ["experiment=higherhrnet_w32", f"data.root={coco_root}", f"output_dir={tmp_path / out}"]
            return compose(config_name="train", overrides=[*overrides, *SMALL[1:], *vit, *extra])

    full = train(cfg("full", "trainer.epochs=2"))
    assert full["step"] == 4 and "ap" in full
    train(cfg("part", "trainer.epochs=1"))
    resumed = train(cfg("other", "trainer.epochs=2", f"resume={tmp_path / 'part' / 'last.pt'}"))
    assert resumed["start_step"] == 2 and resumed["step"] == 4
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "part" / "last.pt")
    assert any(k.startswith("backbone.blocks.1.") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    estimator = PoseEstimator.from_checkpoint(tmp_path / "full" / "last.pt", device="cpu")
    image = cv2.imread(str(next((coco_root / "val2017").glob("*.jpg"))))
    prediction = estimator(image)
    assert prediction.keypoints.shape[1:] == (17, 3) and len(prediction.scores) == len(prediction.keypoints)

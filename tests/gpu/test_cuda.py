"""The CUDA paths on a real GPU: AMP training, exact resume, DDP over NCCL, inference precisions, GPU grouping.

Every test here needs ``torch.cuda.is_available()`` and is skipped with "CUDA is not available" elsewhere (CI has
no GPU). ``tests/gpu/run.sh`` runs them on a GPU machine (``-m cuda``), with the benchmark. Budget: the whole
file in well under 4 minutes on one H200.

* ``trainer.precision=fp16|bf16``: HigherHRNet-W32 at 512, batch 12, 100+ steps on the real coco-mini train images
  (pin-memory loading, 4 workers, training pictures on the GPU): finite loss that falls, finite checkpoint, GradScaler
  state for fp16 only.
* Resume with deterministic algorithms (in a subprocess): 4 epochs straight equal 2 epochs + ``resume`` to 4, bit
  for bit (weights and optimiser state), fp32 and fp16 + channels_last.
* ``torchrun --nproc_per_node 1`` with ``trainer.device=cuda trainer.sync_bn=true``: NCCL, SyncBatchNorm, DDP.
* Inference on CUDA (fp32 / fp16 / bf16, channels_last, folded BatchNorm, ``torch.compile``) against CPU fp32 with a
  network that finds the annotated people of four val images (memorised on the GPU first).
* Grouping on maps that live on the GPU equals grouping on the same maps in NumPy.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bottomup.api import PoseEstimator, train
from bottomup.build import (
    build_model,
    build_optimizer,
    build_train_dataset,
    build_train_loader,
    compose,
    evaluate_model,
    load_model,
)
from bottomup.codec import AssociativeEmbeddingCodec
from bottomup.codec.grouping import group_keypoints, nms_topk
from bottomup.data import AugmentParams, collate
from bottomup.data.ideal_cases import iter_ideal_cases
from bottomup.engine.checkpoint import load_checkpoint
from bottomup.engine.distributed import DistInfo
from bottomup.engine.inference import aggregate_outputs, postprocess
from bottomup.engine.trainer import _to_device
from bottomup.models import HigherHRNet
from bottomup.models.losses import AssociativeEmbeddingLoss

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")]

REPO = Path(__file__).resolve().parents[2]
#: The published model and recipe: HigherHRNet-W32, input 512, batch 12 (conf/experiment/higherhrnet_w32.yaml).
W32_512 = ["experiment=higherhrnet_w32", "data.batch_size=12", "data.num_workers=4", "trainer.device=cuda"]
#: A smaller network for the tests that check exactness rather than speed.
SMALL = ["experiment=higherhrnet_w32", "model.width=16", "data.input_size=256", "data.batch_size=4",
         "data.num_workers=2", "trainer.device=cuda"]  # fmt: skip


def _cfg(coco_root: Path, out: Path, *overrides: str):
    return compose("train", [f"data.root={coco_root}", f"output_dir={out}", "trainer.progress=false", *overrides])


def _scalars(tb_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if torch.is_tensor(t) and t.is_floating_point())


def _optimizer_tensors(state: dict) -> list[torch.Tensor]:
    return [v for per_param in state["state"].values() for v in per_param.values() if torch.is_tensor(v)]


# ------------------------------------------------------------------------------------------------- training
#: Epochs of the AMP trainings, over the train images repeated (``train_repeated``) to >= 25 steps per epoch.
AMP_EPOCHS = 4


@pytest.fixture(scope="module")
def train_repeated(coco_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The coco-mini train annotations with each image listed several times (new image and annotation ids, the same
    files), so that an epoch at batch 12 has >= 25 steps: 100+ steps in ``AMP_EPOCHS`` epochs and as many checkpoint
    writes (a W32 ``last.pt`` with its Adam state is ~330 MB, ~2 s to write and fsync) instead of one per 3 steps
    (only 36 of the 80 images have people). Returns the file and the steps per epoch."""
    src = json.loads((coco_root / "annotations" / "person_keypoints_train2017.json").read_text())
    with_people = len({a["image_id"] for a in src["annotations"]})
    copies = -(-25 * 12 // with_people)
    offset = 10 ** len(str(max(im["id"] for im in src["images"])))
    aoffset = 10 ** len(str(max(a["id"] for a in src["annotations"])))
    out = {**src, "images": [], "annotations": []}
    for c in range(copies):
        out["images"] += [{**im, "id": im["id"] + c * offset} for im in src["images"]]
        out["annotations"] += [{**a, "id": a["id"] + c * aoffset, "image_id": a["image_id"] + c * offset}
                               for a in src["annotations"]]  # fmt: skip
    path = tmp_path_factory.mktemp("train_repeated") / "person_keypoints_train2017_repeated.json"
    path.write_text(json.dumps(out))
    return path, copies * with_people // 12


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_amp_training_w32_512_batch12_on_real_images(
    coco_root: Path, train_repeated: tuple[Path, int], tmp_path: Path, precision: str
) -> None:
    """100+ steps (``AMP_EPOCHS`` epochs of the train images with people, repeated) of the published model and recipe
    (Adam 1.5e-3 after the 500-step warm-up) at batch 12 under autocast, fp16 with GradScaler; 4 loader workers,
    pinned memory, training pictures (on the GPU) at step 60.

    At the official initialisation the 1/4 heatmaps carry output noise of about twice the target's energy (measured
    at W16-256: noise 0.66e-3 against 1.2e-3 of target energy; relatively more at 512), which the first steps remove:
    the mean loss of the last 12 steps is well below that of the first 12."""
    ann, per_epoch = train_repeated
    steps = AMP_EPOCHS * per_epoch
    assert steps >= 100
    torch.cuda.reset_peak_memory_stats()
    cfg = _cfg(coco_root, tmp_path, *W32_512, f"data.train_ann={ann}", f"trainer.precision={precision}",
               f"trainer.epochs={AMP_EPOCHS}", "trainer.log_every=1", "trainer.image_every=60")  # fmt: skip
    summary = train(cfg)
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    assert summary["step"] == steps and summary["run_dir"] == str(tmp_path)
    losses = _scalars(tmp_path / "tb", "train/loss")
    assert [s for s, _ in losses] == list(range(1, steps + 1))
    values = np.array([v for _, v in losses])
    assert np.isfinite(values).all(), values
    first, last = values[:12].mean(), values[-12:].mean()
    speed = np.median([v for _, v in _scalars(tmp_path / "tb", "train/images_per_s")][10:])
    print(f"{precision}: loss {first:.4e} (steps 1-12) -> {last:.4e} (the last 12 of {steps}), {speed:.1f} images/s (data "
          f"loading included), peak GPU memory {peak_gib:.2f} GiB")  # fmt: skip
    assert last < 0.9 * first, values
    assert peak_gib > 1.0  # the network ran on the GPU (W32-512 at batch 12 needs several GiB)
    ckpt = load_checkpoint(summary["last"])
    assert ckpt["step"] == steps and ckpt["epoch"] == AMP_EPOCHS
    assert _all_finite(ckpt["model"].values()) and _all_finite(_optimizer_tensors(ckpt["optimizer"]))
    if precision == "fp16":
        scaler = ckpt["scaler"]
        assert scaler is not None and 0 < scaler["scale"] < float("inf"), scaler
    else:
        assert ckpt["scaler"] is None  # bf16 needs no loss scaling
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    assert {"train/skeletons", "train/heatmaps", "train/tags"} <= set(acc.Tags()["images"])  # pictures at step 60
    torch.cuda.empty_cache()


def test_cuda_loader_pins_memory_and_moves_batches_to_the_gpu(coco_root: Path) -> None:
    cfg = _cfg(coco_root, Path("/tmp/unused"), *SMALL)
    dataset = build_train_dataset(cfg.data, cfg.model.strides, train=True, seed=0)
    device = torch.device("cuda:0")
    loader, sampler = build_train_loader(dataset, cfg.data, DistInfo(), 0, device)
    sampler.set_epoch(0)
    assert loader.pin_memory
    batch = next(iter(loader))
    pinned = [batch["image"], *batch["heatmaps"], *batch["masks"], batch["tag_indices"]]
    assert all(t.is_pinned() for t in pinned)
    b = _to_device(batch, device, channels_last=True)
    torch.cuda.synchronize()
    assert b["image"].is_cuda and b["image"].is_contiguous(memory_format=torch.channels_last)
    assert all(t.is_cuda for t in [*b["heatmaps"], *b["masks"], b["tag_indices"]])
    torch.testing.assert_close(b["image"].cpu(), batch["image"], rtol=0, atol=0)
    torch.testing.assert_close(b["heatmaps"][-1].cpu(), batch["heatmaps"][-1], rtol=0, atol=0)


# Runs the trainings whose overrides are given in argv[1] (JSON list of lists) with deterministic algorithms:
# set before CUDA is touched, in a process of its own, so that no global state leaks into the other tests.
_DETERMINISTIC_RUNS = """
import json, sys
import torch
torch.use_deterministic_algorithms(True)
torch.backends.cudnn.benchmark = False
from bottomup.api import train
from bottomup.build import compose
for overrides in json.loads(sys.argv[1]):
    s = train(compose("train", overrides))
    print("RUN " + json.dumps({"start_step": s["start_step"], "step": s["step"], "last": s["last"]}), flush=True)
"""


@pytest.mark.parametrize(
    "precision,channels_last", [("fp32", False), ("fp16", True)], ids=["fp32", "fp16-channels_last"]
)
def test_resume_on_cuda_continues_exactly(coco_root: Path, tmp_path: Path, precision: str, channels_last: bool) -> None:
    """4 epochs of 3 steps straight, against 2 epochs then ``resume=<part>/last.pt`` to 4: the same weights,
    optimiser state and (fp16) GradScaler state, bit for bit, with ``torch.use_deterministic_algorithms(True)``,
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` and ``cudnn.benchmark=False``. The augmentation of sample ``i`` is drawn
    from ``(seed, epoch, i)`` and the random states are saved, so nothing else differs."""
    common = [f"data.root={coco_root}", *SMALL, f"trainer.precision={precision}",
              f"trainer.channels_last={str(channels_last).lower()}", "trainer.steps_per_epoch=3",
              "schedule.warmup_iters=3", "trainer.progress=false"]  # fmt: skip
    runs = [
        [*common, f"output_dir={tmp_path / 'full'}", "trainer.epochs=4"],
        [*common, f"output_dir={tmp_path / 'part'}", "trainer.epochs=2"],
        [*common, f"output_dir={tmp_path / 'other'}", "trainer.epochs=4", f"resume={tmp_path / 'part' / 'last.pt'}"],
    ]
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    res = subprocess.run([sys.executable, "-c", _DETERMINISTIC_RUNS, json.dumps(runs)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])
    done = [json.loads(line[4:]) for line in res.stdout.splitlines() if line.startswith("RUN ")]
    assert [(d["start_step"], d["step"]) for d in done] == [(0, 12), (0, 6), (6, 12)], done
    # a resume writes into the checkpoint's folder
    assert Path(done[2]["last"]).resolve() == (tmp_path / "part" / "last.pt").resolve()
    full, resumed = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "part" / "last.pt")
    assert full["step"] == resumed["step"] == 12 and full["epoch"] == resumed["epoch"] == 4
    a, b = full["model"], resumed["model"]
    assert a.keys() == b.keys()
    differ = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a if not torch.equal(a[k], b[k])}
    assert not differ, f"{len(differ)} of {len(a)} tensors differ after the resume, e.g. {list(differ.items())[:5]}"
    opt_a, opt_b = _optimizer_tensors(full["optimizer"]), _optimizer_tensors(resumed["optimizer"])
    assert len(opt_a) == len(opt_b) and all(torch.equal(x, y) for x, y in zip(opt_a, opt_b, strict=True))
    assert full["scaler"] == resumed["scaler"] and (full["scaler"] is not None) == (precision == "fp16")


def test_torchrun_nccl_sync_bn_one_gpu(coco_root: Path, tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 1`` on CUDA: NCCL process group, SyncBatchNorm, DDP, fp16 AMP; rank 0 saves
    the plain network (no ``module.`` prefix) that ``load_model`` rebuilds."""
    env = {**os.environ, "NCCL_DEBUG": "INFO", "OMP_NUM_THREADS": "4"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
        "-m", "bottomup.train", f"data.root={coco_root}", *SMALL, "trainer.epochs=1", "trainer.steps_per_epoch=3",
        "trainer.sync_bn=true", "trainer.precision=fp16", "trainer.progress=false", f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    assert "NCCL" in out, out[-3000:]  # NCCL_DEBUG=INFO: the NCCL communicator was set up (version / init lines)
    logs = out + "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert "on cuda:0 (1 process)" in logs, logs[-3000:]
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 3 and ckpt["epoch"] == 1 and ckpt["scaler"] is not None
    assert not any(k.startswith("module.") for k in ckpt["model"])
    assert _all_finite(ckpt["model"].values())
    model, _, kind = load_model(tmp_path / "last.pt")
    assert kind == "project" and isinstance(model, HigherHRNet)


# ------------------------------------------------------------------------------------------------ inference
#: Val images with one or two well-annotated people each, all landscape and 640 px wide.
OVERFIT_VAL_IMAGES = [139, 192699, 214753, 349860]
# Training crops a square of 1.5 x the short side (the whole image) into 288 px; testing resizes the short side
# to 192: the same scale, so the memorised people look alike in both (as in tests/engine/test_learning.py).
TRAIN_SIZE, TEST_SIZE = 288, 192


@pytest.fixture(scope="module")
def val_subset(coco_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    src = json.loads((coco_root / "annotations" / "person_keypoints_val2017.json").read_text())
    keep = set(OVERFIT_VAL_IMAGES)
    subset = {
        **src,
        "images": [im for im in src["images"] if im["id"] in keep],
        "annotations": [a for a in src["annotations"] if a["image_id"] in keep],
    }
    assert len(subset["images"]) == len(keep)
    path = tmp_path_factory.mktemp("overfit") / "val4.json"
    path.write_text(json.dumps(subset))
    return {"ann": path, "json": subset, "images": coco_root / "val2017"}


@pytest.fixture(scope="module")
def people_model(coco_root: Path, val_subset: dict) -> torch.nn.Module:
    """HigherHRNet-W16 that has memorised the people of ``OVERFIT_VAL_IMAGES`` and of their mirror images (flip test
    runs both): 400 fp32 steps on the GPU, Adam 1e-4 after a short warm-up, the loss of tests/engine/test_learning.py.
    Returned on the CPU in eval mode."""
    cfg = _cfg(coco_root, Path("/tmp/unused"), "experiment=higherhrnet_w32", "model.width=16",
               f"data.train_ann={val_subset['ann']}", f"data.train_images={val_subset['images']}",
               f"data.input_size={TRAIN_SIZE}")  # fmt: skip
    dataset = build_train_dataset(cfg.data, cfg.model.strides, train=False)
    assert sorted(dataset.image_ids) == sorted(OVERFIT_VAL_IMAGES)
    views = [AugmentParams(scale=1.5, flip=flip) for flip in (False, True)]
    batch = collate([dataset.sample(i, view) for view in views for i in range(len(dataset))])
    device = torch.device("cuda:0")
    b = _to_device(batch, device, channels_last=False)
    torch.manual_seed(0)
    model = build_model(cfg.model, 17).to(device).train()
    criterion = AssociativeEmbeddingLoss(17, push_type="max", pull_weight=0.01, push_weight=0.01)
    optim_cfg = compose("train", ["optim.lr=1e-4", "schedule.warmup_iters=10", "schedule.milestones=[330]"])
    optimizer, scheduler = build_optimizer(optim_cfg.optim, optim_cfg.schedule, model, iters_per_epoch=1)
    losses = []
    for _ in range(400):
        parts = criterion(model(b["image"]), b["heatmaps"], b["masks"], b["tag_indices"])
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        optimizer.step()
        scheduler.step()
        losses.append(parts["loss"].detach())
    losses = torch.stack(losses).cpu()
    assert torch.isfinite(losses).all() and losses[-10:].mean() < 0.5 * losses[:10].mean(), losses[::20]
    return model.eval().cpu()


def _oks(gt: np.ndarray, det: np.ndarray, area: float, sigmas: np.ndarray) -> float:
    """COCO object keypoint similarity of ``det (K, >=2)`` to ``gt (K, 3)`` over the labeled joints."""
    labeled = gt[:, 2] > 0
    d2 = ((det[:, :2] - gt[:, :2]) ** 2).sum(axis=1)
    e = d2 / ((2 * sigmas) ** 2 * (area + np.spacing(1)) * 2)
    return float(np.exp(-e)[labeled].mean())


def _annotated_people(subset: dict, image_id: int) -> list[dict]:
    return [a for a in subset["annotations"] if a["image_id"] == image_id and not a["iscrowd"]
            and a["num_keypoints"] >= 8]  # fmt: skip


def _found(pred, gt: dict, sigmas: np.ndarray) -> tuple[int, float]:
    """Index and OKS of the detection that best matches the annotated person ``gt``."""
    kp = np.asarray(gt["keypoints"], dtype=np.float64).reshape(-1, 3)
    if len(pred.scores) == 0:
        return -1, 0.0
    oks = [_oks(kp, det, gt["area"], sigmas) for det in pred.keypoints]
    best = int(np.argmax(oks))
    return best, oks[best]


@pytest.fixture(scope="module")
def cpu_reference(people_model: torch.nn.Module, coco_layout, val_subset: dict) -> dict:
    """CPU fp32 ``PoseEstimator`` outputs (maps and people, flip test on) per memorised val image, and the annotated
    people (>= 8 labeled joints) that it finds (a detection with OKS > 0.5): the people the CUDA paths must find."""
    est = PoseEstimator(copy.deepcopy(people_model), layout=coco_layout, input_size=TEST_SIZE, device="cpu")
    runs, found = {}, {}
    sigmas = np.asarray(coco_layout.oks_sigmas)
    annotated = 0
    for im in val_subset["json"]["images"]:
        runs[im["id"]] = run = est.run(val_subset["images"] / im["file_name"])
        people = _annotated_people(val_subset["json"], im["id"])
        annotated += len(people)
        found[im["id"]] = [gt for gt in people if _found(run, gt, sigmas)[1] > 0.5]
    hits = sum(len(v) for v in found.values())
    print(f"CPU fp32 finds {hits} of the {annotated} annotated people; people per image "
          f"{[len(r.scores) for r in runs.values()]}")  # fmt: skip
    assert hits >= annotated - 1 and hits >= 4, f"the memorised network finds only {hits} of {annotated} people"
    return {"runs": runs, "found": found}


#: name -> (PoseEstimator settings, atol of the heatmaps against CPU fp32, atol of person scores, share of the
#: joints found with value >= 0.3 that must stay within 2.5 input px). fp32 convolutions run in TF32 on CUDA by
#: default (cudnn.allow_tf32), close to fp16's rounding. Rounding can hand a joint of a memorised person to a nearby
#: weak detection instead (the memorised nets also fire on unannotated people): in a CPU rehearsal (W8 at 128 px)
#: bf16 moved 2 of one person's 9 such joints, fp16 none; hence the share rather than all of them. The same
#: rehearsal's largest heatmap differences: bf16 0.014, fp16 0.0015 (CPU autocast standing in for CUDA's).
INFERENCE_VARIANTS = {
    "fp32": ({}, 0.02, 0.02, 0.85),
    "fp32-channels_last": ({"channels_last": True}, 0.02, 0.02, 0.85),
    "fp32-folded": ({"fold_bn": True}, 0.02, 0.02, 0.85),
    "fp16": ({"precision": "fp16"}, 0.02, 0.05, 0.85),
    "bf16": ({"precision": "bf16"}, 0.05, 0.08, 0.7),
    "fp16-channels_last-folded": ({"precision": "fp16", "channels_last": True, "fold_bn": True}, 0.02, 0.05, 0.85),
    "bf16-channels_last-folded": ({"precision": "bf16", "channels_last": True, "fold_bn": True}, 0.05, 0.08, 0.7),
}


@pytest.mark.parametrize("variant", list(INFERENCE_VARIANTS))
def test_cuda_inference_finds_the_cpu_fp32_people(
    people_model: torch.nn.Module, cpu_reference: dict, coco_layout, val_subset: dict, variant: str
) -> None:
    """Same maps up to rounding, the same annotated people (found with OKS > 0.5; most joints the CPU finds with
    value >= 0.3 within 2.5 input pixels; person scores close), and as many confident people (score >= 0.2 on one
    side, >= 0.1 on the other: a hysteresis, so that a person right at a threshold cannot fail it)."""
    settings, heat_atol, score_atol, share = INFERENCE_VARIANTS[variant]
    est = PoseEstimator(copy.deepcopy(people_model), layout=coco_layout, input_size=TEST_SIZE, device="cuda",
                        **settings)  # fmt: skip
    param = next(est.model.parameters())
    assert est.device == torch.device("cuda:0") and param.is_cuda
    if settings.get("fold_bn"):
        assert param.dtype == {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[est.precision]
    sigmas = np.asarray(coco_layout.oks_sigmas)
    report = []
    for im in val_subset["json"]["images"]:
        ref = cpu_reference["runs"][im["id"]]
        got = est.run(val_subset["images"] / im["file_name"])
        assert got.heatmaps.is_cuda and got.tags.is_cuda  # aggregation ran on the GPU
        heat_err = (got.heatmaps.cpu() - ref.heatmaps).abs().max().item()
        report.append(f"{im['id']}: heatmaps max |diff| {heat_err:.4f}, people {len(ref.scores)} cpu / "
                      f"{len(got.scores)} cuda")  # fmt: skip
        assert heat_err <= heat_atol, report
        tol = 2.5 * abs(float(ref.transform.inverse[0, 0]))  # 2.5 input px, in original px
        for gt in cpu_reference["found"][im["id"]]:
            i, _ = _found(ref, gt, sigmas)
            j, oks = _found(got, gt, sigmas)
            assert oks > 0.5, (variant, im["id"], report)
            sure = ref.keypoints[i, :, 2] >= 0.3
            dist = np.linalg.norm(got.keypoints[j, sure, :2] - ref.keypoints[i, sure, :2], axis=1)
            assert sure.sum() >= 3, (variant, im["id"], ref.keypoints[i, :, 2])
            report.append(f"person {gt['id']}: {int((dist <= tol).sum())}/{len(dist)} joints within {tol:.1f} px")
            assert (dist <= tol).mean() >= share, (variant, im["id"], dist, tol, report)
            assert abs(float(got.scores[j]) - float(ref.scores[i])) <= score_atol, (ref.scores[i], got.scores[j])
        for a, b in ((ref.scores, got.scores), (got.scores, ref.scores)):
            assert (a >= 0.2).sum() <= (b >= 0.1).sum(), (variant, im["id"], ref.scores, got.scores)
    print(f"{variant}: " + "; ".join(report))


def test_evaluate_model_on_cuda_scores_like_cpu(people_model: torch.nn.Module, coco_root: Path, val_subset: dict,
                                                tmp_path: Path) -> None:  # fmt: skip
    """The evaluation (the training's validation) on CUDA: COCO AP on the memorised images as on the CPU."""
    cfg = _cfg(coco_root, tmp_path, "experiment=higherhrnet_w32", "model.width=16", f"data.val_ann={val_subset['ann']}",
               f"test.input_size={TEST_SIZE}")  # fmt: skip
    stats = {}
    for device in ("cpu", "cuda"):
        model = copy.deepcopy(people_model)
        stats[device] = evaluate_model(model, cfg, device=device, output_json=tmp_path / f"{device}.json",
                                       progress=False)  # fmt: skip
    print(f"AP on the 4 memorised val images: cpu {stats['cpu']['AP']:.3f}, cuda {stats['cuda']['AP']:.3f}")
    assert stats["cpu"]["AP"] >= 0.3  # memorised people, not a flat net
    assert abs(stats["cuda"]["AP"] - stats["cpu"]["AP"]) <= 0.03, stats


def test_compiled_inference_on_cuda_matches_eager(coco_root: Path, coco_layout) -> None:
    """``PoseEstimator(compile=True)`` (folded, fp16 weights, channels_last, inductor with freezing) gives the maps of
    the same estimator uncompiled. A small random network whose biased heatmaps pass the detection threshold, so
    that grouping has work to do; one image, so one compilation."""
    torch.manual_seed(0)
    net = HigherHRNet(width=8, stage_modules=(1, 1, 1), blocks_per_branch=1)
    with torch.no_grad():
        for layer in net.final_layers:
            torch.nn.init.normal_(layer.weight, std=0.05)
            layer.bias[:17] = 0.3
    image = coco_root / "val2017" / "000000000139.jpg"
    kwargs = dict(layout=coco_layout, input_size=256, device="cuda", precision="fp16", channels_last=True,
                  fold_bn=True, max_people=4)  # fmt: skip
    eager = PoseEstimator(copy.deepcopy(net), **kwargs).run(image)
    compiled_est = PoseEstimator(copy.deepcopy(net), compile=True, **kwargs)
    compiled = compiled_est.run(image)
    assert type(compiled_est.model).__name__ == "OptimizedModule"
    assert len(eager.scores) > 0 and np.isfinite(compiled.keypoints).all()
    err = (compiled.heatmaps - eager.heatmaps).abs().max().item()
    assert err <= 0.02, err
    assert (compiled.tags - eager.tags).abs().max().item() <= 0.05


# ------------------------------------------------------------------------------------------------- grouping
@pytest.mark.parametrize("flip", [False, True], ids=["noflip", "flip"])
def test_grouping_of_gpu_maps_equals_numpy(coco_root: Path, coco_layout, flip: bool) -> None:
    """The ideal maps of the first 12 val images (tests/codec/test_roundtrip.py), aggregated on the CPU and then put on the
    GPU: NMS / top-k (max-pool on the GPU) and the whole grouping give exactly the NumPy results; fp16 maps on the GPU
    give the results of the same fp16 values in NumPy. Aggregated on the GPU they differ by float rounding only."""
    order = coco_layout.joint_order_index
    people = 0
    for _, per_scale, tf in iter_ideal_cases(coco_root, coco_layout, flip, limit=12):
        ((_, outs, flips),) = per_scale
        kw = dict(num_keypoints=coco_layout.num_keypoints, flip_index=coco_layout.flip_index, project_size=tf.size)
        heat, tag = aggregate_outputs(outs, flips, **kw)
        det, tg = heat[0], tag[0]
        ref_kp, ref_sc = group_keypoints(det.numpy(), tg.numpy(), joint_order=order)
        kp, sc = group_keypoints(det.cuda(), tg.cuda(), joint_order=order)
        np.testing.assert_array_equal(kp, ref_kp)
        np.testing.assert_array_equal(sc, ref_sc)
        for threshold in (0.1, None):  # the thresholded fast path and the exact official top-k
            ref = nms_topk(det.numpy(), tg.numpy(), threshold=threshold)
            got = nms_topk(det.cuda(), tg.cuda(), threshold=threshold)
            for a, b in zip(got, ref, strict=True):
                np.testing.assert_array_equal(a, b)
        half_kp, _ = group_keypoints(det.half().cuda(), tg.half().cuda(), joint_order=order)
        ref_half, _ = group_keypoints(det.half().float().numpy(), tg.half().float().numpy(), joint_order=order)
        np.testing.assert_array_equal(half_kp, ref_half)
        gheat, gtag = aggregate_outputs([o.cuda() for o in outs], None if flips is None else [o.cuda() for o in flips],
                                        **kw)  # fmt: skip
        assert gheat.is_cuda and gtag.is_cuda
        torch.testing.assert_close(gheat.cpu(), heat, rtol=0, atol=1e-5)
        torch.testing.assert_close(gtag.cpu(), tag, rtol=0, atol=1e-5)
        people += kp.shape[0]
    assert people > 0


def test_decode_on_gpu_scores_the_round_trip_like_the_cpu(coco_root: Path, coco_layout) -> None:
    """The whole decode (aggregate, project, group, map back) of the ideal outputs of every val image, with the
    outputs on the GPU: the people of the CPU decode (ties between equal neighbouring pixels may resolve one pixel
    apart after rounding) and the round-trip COCO AP of tests/codec/test_roundtrip.py."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    codec = AssociativeEmbeddingCodec.from_layout(coco_layout)
    results = []
    for img_id, per_scale, tf in iter_ideal_cases(coco_root, coco_layout, flip=True):
        cpu_kp, cpu_sc = postprocess(per_scale, tf, codec=codec)
        gpu_scale = [(s, [o.cuda() for o in outs], [o.cuda() for o in flips]) for s, outs, flips in per_scale]
        kp, sc = postprocess(gpu_scale, tf, codec=codec)
        assert kp.shape == cpu_kp.shape, img_id
        if len(sc):
            assert np.abs(kp[..., :2] - cpu_kp[..., :2]).max() <= 3.0, img_id  # original px
            np.testing.assert_allclose(sc, cpu_sc, rtol=0, atol=1e-3)
        results += [{"image_id": img_id, "category_id": 1, "keypoints": k.reshape(-1).tolist(), "score": float(s)}
                    for k, s in zip(kp, sc, strict=True)]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_root / "annotations" / "person_keypoints_val2017.json"))
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.params.kpt_oks_sigmas = np.array(coco_layout.oks_sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    print(f"round-trip AP with the decode on the GPU: {ev.stats[0]:.4f} ({len(results)} people)")
    assert len(results) >= 60 and ev.stats[0] >= 0.95

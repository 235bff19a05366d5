"""Every experiment composes from conf/ and builds its model, loss, optimiser, schedule and data set."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf, open_dict

from bottomup.build import build_model, build_train_dataset

CONF = Path(__file__).resolve().parents[2] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))

EXPECTED = {  # experiment -> (width, strides, input size, K)
    "higherhrnet_w32": (32, [4, 2], 512, 17),
    "higherhrnet_w32_640": (32, [4, 2], 640, 17),
    "higherhrnet_w48": (48, [4, 2], 512, 17),  # MMPose 0.x higherhrnet_w48_coco_512x512
    "higherhrnet_w48_640": (48, [4, 2], 640, 17),
    "hrnet_w32_ae": (32, [4], 512, 17),
    "hrnet_w48_ae": (48, [4], 512, 17),  # MMPose 0.x hrnet_w48_coco_512x512
}


def compose_train(overrides: list[str]) -> OmegaConf:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=False)


def test_all_published_experiments_exist() -> None:
    assert set(EXPECTED) <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_experiment_composes_and_builds(experiment: str, coco_root: Path) -> None:
    cfg = compose_train([f"experiment={experiment}", f"data.root={coco_root}", "output_dir=/tmp/unused"])
    width, strides, size, k = EXPECTED[experiment]
    assert cfg.model.width == width and list(cfg.model.strides) == strides
    assert cfg.data.input_size == size and cfg.model.num_keypoints == k and cfg.loss.num_keypoints == k
    assert len(cfg.loss.heatmap_weights) == len(strides)
    model = build_model(cfg.model, cfg.data.num_keypoints)
    criterion = hydra.utils.instantiate(cfg.loss)
    optimizer = hydra.utils.instantiate(cfg.optim)(params=model.parameters())
    scheduler = hydra.utils.instantiate(cfg.schedule)(optimizer=optimizer, iters_per_epoch=10)
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["lr"] == pytest.approx(1.5e-6)
    for _ in range(600):
        optimizer.step()  # no gradients: a no-op that keeps the step order torch expects
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.5e-3)  # warm-up over 500 iterations done
    dataset = build_train_dataset(cfg.data, cfg.model.strides)
    sample = dataset[0]
    assert sample["image"].shape == (3, size, size)
    assert [tuple(h.shape) for h in sample["heatmaps"]] == [(k, size // s, size // s) for s in strides]
    with torch.no_grad():
        outputs = model(sample["image"][None, :, :64, :64].contiguous())
    assert [tuple(o.shape) for o in outputs] == [(1, 2 * k if s == 4 else k, 64 // s, 64 // s) for s in strides]
    zeros = [torch.zeros(1, 2 * k if s == 4 else k, size // s, size // s) for s in strides]
    parts = criterion(
        zeros, [h[None] for h in sample["heatmaps"]], [m[None] for m in sample["masks"]], sample["tag_indices"][None]
    )
    assert torch.isfinite(parts["loss"])


def test_crowdpose_data_config_has_14_keypoints(data_root: Path) -> None:
    cfg = compose_train(["data=crowdpose", f"data.root={data_root}", "output_dir=/tmp/unused"])
    assert cfg.data.num_keypoints == 14 and len(cfg.data.keypoint_names) == 14
    assert cfg.model.num_keypoints == 14 and cfg.data.eval_type == "crowdpose"
    model = build_model(cfg.model, cfg.data.num_keypoints)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out[0].shape[1] == 28 and out[1].shape[1] == 14


def test_unknown_experiment_names_the_available_ones() -> None:
    with pytest.raises(MissingConfigException) as err:
        compose_train(["experiment=higherhrnet_w99"])
    assert "higherhrnet_w99" in str(err.value)
    assert "higherhrnet_w32" in str(err.value)  # the message lists what exists


def test_model_k_mismatch_is_reported(coco_root: Path) -> None:
    cfg = compose_train([f"data.root={coco_root}", "model.num_keypoints=14", "output_dir=/tmp/unused"])
    with pytest.raises(ValueError, match=r"model.num_keypoints=14 but data.num_keypoints=17"):
        build_model(cfg.model, cfg.data.num_keypoints)


def test_smoke_preset_is_the_published_network_in_three_small_steps(coco_root: Path) -> None:
    cfg = compose_train(["experiment=smoke", f"data.root={coco_root}", "output_dir=/tmp/unused"])
    assert (cfg.model.width, list(cfg.model.strides), cfg.data.input_size) == (32, [4, 2], 512)
    assert list(cfg.model.stage_modules) == [1, 4, 3] and cfg.model.blocks_per_branch == 4  # as published
    assert (cfg.data.batch_size, cfg.data.num_workers, cfg.trainer.epochs, cfg.trainer.steps_per_epoch) == (2, 1, 1, 3)


def test_eval_config_has_its_own_keys_and_the_test_group() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=["checkpoint=best.pt", "test.scales=[2,1,0.5]"])
    assert {"data", "model", "test", "checkpoint", "device", "max_images", "progress"} <= set(cfg)
    assert not {"trainer", "loss", "optim", "schedule", "resume"} & set(cfg)  # no training settings
    assert list(cfg.test.scales) == [2, 1, 0.5] and cfg.test.input_size == cfg.data.input_size
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        assert OmegaConf.is_missing(compose(config_name="eval"), "checkpoint")  # checkpoint: ??? must be given


@pytest.mark.parametrize("entry", ["train", "evaluate"])
def test_help_is_short_with_examples_and_every_experiment(entry, tmp_path):
    """``--help`` shows the usage, examples and one line per experiment, not the 200-line config dump."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", f"bottomup.{entry}", "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert len(text.splitlines()) < 60 and "Examples:" in text and f"python -m bottomup.{entry}" in text
    assert "_target_" not in text  # no config dump
    listed = (
        EXPERIMENTS
        if entry == "train"
        else [e for e in EXPERIMENTS if e not in ("quickstart", "quickstart_vit", "smoke")]
    )
    for name in listed:
        assert name in text.split("Examples:")[1], name


SWAHR_EXPECTED = {  # experiment -> (width, input size, K, lr, batch per process, test detection threshold, data)
    "swahr_w32": (32, 512, 17, 0.002, 20, 0.12, "coco"),
    "swahr_w48_640": (48, 640, 17, 0.00096, 10, 0.1, "coco"),
    "swahr_w32_crowdpose": (32, 512, 14, 0.002, 20, 0.12, "crowdpose"),
    "swahr_w48_640_crowdpose": (48, 640, 14, 0.00096, 10, 0.1, "crowdpose"),
}


@pytest.mark.parametrize("experiment", sorted(SWAHR_EXPECTED))
def test_swahr_experiment_is_the_official_recipe(experiment: str, coco_root: Path) -> None:
    """The official SWAHR configs (experiments/*/higher_hrnet/*_adam_lr1e-3.yaml): LR x WORLD_SIZE 8, images per GPU,
    3 warm-up epochs from 0.1 x LR then linear decay to 0 at epoch 300; the model has the scale heads, the loss
    follows it, and evaluation composes the same experiment (for an official .pth)."""
    width, size, k, lr, batch, threshold, data = SWAHR_EXPECTED[experiment]
    cfg = compose_train([f"experiment={experiment}", f"data.root={coco_root}", "output_dir=/tmp/unused"])
    assert (cfg.model.width, cfg.data.input_size, cfg.data.num_keypoints, cfg.data.name) == (width, size, k, data)
    assert cfg.model.swahr is True and cfg.loss.swahr is True and cfg.loss.scale_weight == 1.0
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.data.batch_size) == (lr, 0.0, batch)
    assert (cfg.trainer.epochs, cfg.test.detection_threshold, cfg.trainer.sync_bn) == (300, threshold, width == 48)
    assert (cfg.data.sigma, cfg.data.max_people, cfg.data.augmentation.max_rotation) == (2.0, 30, 30.0)
    model = build_model(cfg.model, k)
    assert model.out_channels == (3 * k, 2 * k)
    optimizer = hydra.utils.instantiate(cfg.optim)(params=model.parameters())
    scheduler = hydra.utils.instantiate(cfg.schedule)(optimizer=optimizer, iters_per_epoch=10)
    lrs = []
    for _ in range(3000):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1 * lr) and lrs[15] == pytest.approx(0.55 * lr) and lrs[30] == pytest.approx(lr)
    assert lrs[30 + 1485] == pytest.approx(0.5 * lr) and lrs[-1] == pytest.approx(lr / 2970)
    assert optimizer.param_groups[0]["lr"] == 0.0
    criterion = hydra.utils.instantiate(cfg.loss)
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, 64, 64))
    targets = [torch.zeros(1, k, 64 // s, 64 // s) for s in (4, 2)]
    targets[0][0, :, 5, 5] = targets[1][0, :, 10, 10] = 1.0
    parts = criterion(outputs, targets, [torch.ones(1, 16, 16), torch.ones(1, 32, 32)], torch.zeros(1, 30, k, 2).long())
    assert torch.isfinite(parts["loss"]) and {"scale/0", "scale/1"} <= set(parts)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        evaluation = compose(config_name="eval", overrides=["checkpoint=x.pth", f"experiment={experiment}"])
    assert evaluation.model.swahr is True and evaluation.test.detection_threshold == threshold
    assert evaluation.test.input_size == size and evaluation.data.num_keypoints == k


# ------------------------------------------------------------------------------ data settings: declared once
def test_every_data_setting_is_declared_in_the_data_config_with_its_default(coco_root: Path) -> None:
    """Each field of the data settings dataclasses is a key of ``conf/data/coco.yaml`` whose value there is the
    field's default (``data.max_images`` used to be read by the builder but declared nowhere)."""
    import dataclasses

    from bottomup.build import settings_from_config
    from bottomup.data.settings import AnnotationSettings, AugmentationSettings, TargetSettings

    cfg = compose_train([f"data.root={coco_root}", "output_dir=/tmp/unused"])
    for cls in (AnnotationSettings, TargetSettings, AugmentationSettings):
        node = OmegaConf.select(cfg, cls.config_node)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in node]
        assert not missing, f"{cls.__name__}: {[f'{cls.config_node}.{k}' for k in missing]} not in conf/data/coco.yaml"
        assert settings_from_config(cls, node) == cls()


def test_max_images_reaches_the_dataset(coco_root: Path) -> None:
    full = build_train_dataset(compose_train([f"data.root={coco_root}"]).data, [4, 2])
    cfg = compose_train([f"data.root={coco_root}", "data.max_images=2"])
    ds = build_train_dataset(cfg.data, cfg.model.strides)
    assert len(ds) == 2 and ds.image_ids == full.image_ids[:2]
    with pytest.raises(ValueError, match=r"data\.max_images must be an integer >= 1"):
        build_train_dataset(compose_train([f"data.root={coco_root}", "data.max_images=0"]).data, [4, 2])


def test_a_data_config_without_a_target_key_gets_one_default(coco_root: Path) -> None:
    """A config that lacks ``data.joint_rounding`` (saved before the key existed) gets the same default from the
    codec builder and the data set builder (the first used to default it in code, the second to require it)."""
    from omegaconf import open_dict

    from bottomup.build import build_codec

    cfg = compose_train([f"data.root={coco_root}"])
    with open_dict(cfg):
        del cfg.data["joint_rounding"]
    assert build_codec(cfg).joint_rounding == "trunc"
    assert build_train_dataset(cfg.data, cfg.model.strides).codec.joint_rounding == "trunc"


def test_data_settings_from_the_config_are_checked_and_name_the_key(coco_root: Path) -> None:
    cases = [
        ("+data.augmentation.flip_probability=0.3", r"unknown key\(s\) data\.augmentation\.flip_probability"),
        ("data.augmentation.flip_prob=1.5", r"data\.augmentation\.flip_prob must be in \[0, 1\]"),
        ("data.augmentation.min_scale=2.0", r"data\.augmentation\.min_scale <= data\.augmentation\.max_scale"),
        ("data.max_people=0", r"data\.max_people must be an integer >= 1"),
        ("data.sigma=-1", r"data\.sigma must be > 0"),
        ("data.scale_aware_sigma=maybe", r"data\.scale_aware_sigma must be true or false"),
    ]
    for override, message in cases:
        cfg = compose_train([f"data.root={coco_root}", override])
        with pytest.raises(ValueError, match=message):
            build_train_dataset(cfg.data, cfg.model.strides)


def test_keys_added_with_plus_that_no_setting_reads_are_refused(coco_root: Path, tmp_path: Path) -> None:
    """``+data.foo=1`` / ``+test.foo=1`` pass Hydra's schema (``+`` adds keys) and were ignored without a word:
    training and evaluation refuse them before anything is read or written, naming the key; every key of the
    published data configs is known; a checkpoint's saved config with an extra key still loads."""
    import os
    import subprocess
    import sys

    from bottomup.api import evaluate, train
    from bottomup.build import check_run_config, data_keys

    for data in ("coco", "crowdpose", "custom", "synthetic"):
        for root in ("train", "eval"):
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                check_run_config(compose(config_name=root, overrides=[f"data={data}"]))
    out = tmp_path / "out"
    base = [f"data.root={coco_root}", f"output_dir={out}", "model.width=8", "data.input_size=128"]
    cases = [
        ("+data.foo=1", f"unknown key(s) data.foo: data holds {', '.join(sorted(data_keys()))}"),
        ("+test.foo=1", "unknown key(s) test.foo: test holds input_size, scales, flip_test"),
        ("+data.augmentation.flip=0", "unknown key(s) data.augmentation.flip: data.augmentation holds max_rotation"),
    ]
    for override, message in cases:
        with pytest.raises(ValueError) as e:
            train(compose_train([*base, override]))
        assert str(e.value).startswith(message), str(e.value)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=[*base, "checkpoint=/nowhere/best.pt", "+test.foo=1"])
    with pytest.raises(ValueError, match=r"^unknown key\(s\) test\.foo: test holds input_size"):
        evaluate(cfg)
    assert not out.exists()
    repo = CONF.parent
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "bottomup.train", *base[:1], "+data.foo=1", f"hydra.run.dir={run}"],
        cwd=repo, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(repo)},
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown key(s) data.foo: data holds" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr and not list(run.glob("*.pt"))


def test_a_saved_config_with_keys_of_another_version_still_loads(quickstart_checkpoint: Path, tmp_path: Path) -> None:
    from bottomup.api import PoseEstimator
    from bottomup.engine.checkpoint import load_checkpoint, save_checkpoint

    checkpoint = load_checkpoint(quickstart_checkpoint)
    saved = OmegaConf.create(checkpoint["config"])
    with open_dict(saved):
        saved.test.retired_setting = 3
        saved.data.retired_key = "x"
    checkpoint["config"] = OmegaConf.to_yaml(saved)
    path = save_checkpoint(checkpoint, tmp_path / "older.pt")
    estimator = PoseEstimator.from_checkpoint(path, device="cpu")
    assert estimator.input_size == int(saved.test.input_size)


VITPOSE_EXPECTED = {  # experiment -> (arch, embed_dim, depth, layer decay, data, K)
    "vitpose_s_ae": ("small", 384, 12, 0.8, "coco", 17),
    "vitpose_b_ae": ("base", 768, 12, 0.75, "coco", 17),
    "vitpose_l_ae": ("large", 1024, 24, 0.8, "coco", 17),
    "vitpose_h_ae": ("huge", 1280, 32, 0.85, "coco", 17),
    **{
        f"vitpose_{s}_ae_crowdpose": (arch, c, d, r, "crowdpose", 14)
        for s, arch, c, d, r in [
            ("s", "small", 384, 12, 0.8), ("b", "base", 768, 12, 0.75), ("l", "large", 1024, 24, 0.8),
            ("h", "huge", 1280, 32, 0.85),
        ]
    },
}  # fmt: skip


@pytest.mark.parametrize("experiment", sorted(VITPOSE_EXPECTED))
def test_vitpose_experiments_are_vitposes_recipe_at_512(experiment: str, coco_root: Path) -> None:
    """ViTPose's backbone sizes and optimiser (AdamW, weight decay 0.1, its layer decay per size, gradient clipping
    at 1, 500 warm-up iterations) at input 512 with one AE output at 1/4; the network built on the meta device."""
    from bottomup.build import build_optimizer

    cfg = compose_train([f"experiment={experiment}", f"data.root={coco_root}", "output_dir=/tmp/unused"])
    arch, width, depth, rate, data, k = VITPOSE_EXPECTED[experiment]
    assert cfg.model.arch == arch and cfg.data.name == data and cfg.model.num_keypoints == k
    assert cfg.data.input_size == 512 and list(cfg.model.strides) == [4] and list(cfg.loss.heatmap_weights) == [1.0]
    assert cfg.optim._target_ == "torch.optim.AdamW" and cfg.optim.weight_decay == 0.1
    assert cfg.optim.param_groups.layer_decay_rate == rate and cfg.trainer.grad_clip == 1.0
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.data.num_keypoints)
    assert model.embed_dim == width and len(model.backbone.blocks) == depth
    optimizer, scheduler = build_optimizer(cfg.optim, cfg.schedule, model, iters_per_epoch=10)
    assert isinstance(optimizer, torch.optim.AdamW)
    scales = {g["lr_scale"] for g in optimizer.param_groups}
    assert max(scales) == 1.0 and min(scales) == pytest.approx(rate ** (depth + 1))
    for _ in range(500):
        optimizer.step()
        scheduler.step()
    assert max(g["lr"] for g in optimizer.param_groups) == pytest.approx(cfg.optim.lr)  # warm-up done

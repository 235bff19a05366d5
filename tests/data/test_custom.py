"""Your own data set (``data=custom``) and fine-tuning (``checkpoint=``), on coco-mini reduced to 5 keypoints."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from conftest import FIVE_KEYPOINTS, compose_train_config, write_subset_keypoint_set

from bottomup.api import PoseEstimator, train
from bottomup.build import build_model, complete_data_layout, prepare_data_root
from bottomup.data.io import load_image
from bottomup.engine.checkpoint import CheckpointError, load_checkpoint

# A narrow HigherHRNet at input 128: a step well under a second on 2 CPU cores.
SMALL = ["model.width=8", "data.input_size=128", "data.batch_size=2", "data.num_workers=0", "trainer.progress=false"]


@pytest.fixture(scope="module")
def five(coco_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """coco-mini with 5 keypoints under category id 7 ("body")."""
    return write_subset_keypoint_set(coco_root, tmp_path_factory.mktemp("five"))


def custom_cfg(five: dict[str, Path], out: Path, *extra: str):
    paths = [f"data.{k}={v}" for k, v in five.items()]
    return compose_train_config(["data=custom", f"data.root={out}", f"output_dir={out}", *paths, *SMALL, *extra])


def test_custom_reads_the_layout_from_the_annotation_file(five: dict[str, Path], tmp_path: Path, caplog) -> None:
    cfg = custom_cfg(five, tmp_path)
    assert cfg.data.keypoint_names is None and cfg.data.num_keypoints is None
    with caplog.at_level(logging.INFO, logger="bottomup"):
        prepare_data_root(cfg.data)
    assert list(cfg.data.keypoint_names) == FIVE_KEYPOINTS
    assert cfg.data.num_keypoints == 5 and cfg.model.num_keypoints == 5  # the model interpolates it
    assert [list(p) for p in cfg.data.flip_pairs] == [["left_shoulder", "right_shoulder"], ["left_hip", "right_hip"]]
    assert ["left_shoulder", "left_hip"] in [list(p) for p in cfg.data.skeleton]  # the file's 1-based limbs, by name
    assert list(cfg.data.oks_sigmas) == [0.026, 0.079, 0.079, 0.107, 0.107]  # COCO's, by name
    assert "data layout read from" in caplog.text


def test_custom_names_without_coco_sigmas_get_the_stated_default(five, tmp_path: Path, caplog) -> None:
    src = json.loads(five["train_ann"].read_text())
    src["categories"][0]["keypoints"] = ["snout", "l_paw", "r_paw", "left_hip", "right_hip"]
    ann = tmp_path / "animals.json"
    ann.write_text(json.dumps(src))
    cfg = custom_cfg(five, tmp_path, f"data.train_ann={ann}", f"data.val_ann={ann}")
    with caplog.at_level(logging.WARNING, logger="bottomup"):
        prepare_data_root(cfg.data)
    assert [list(p) for p in cfg.data.flip_pairs] == [["l_paw", "r_paw"], ["left_hip", "right_hip"]]
    assert list(cfg.data.oks_sigmas) == [0.07, 0.07, 0.07, 0.107, 0.107]
    assert "data.oks_sigmas not set" in caplog.text and "'snout'" in caplog.text


def test_sided_keypoints_without_a_flip_partner_are_named(five, tmp_path: Path, caplog) -> None:
    """``left_*`` without ``right_*`` (or a pair left out of data.flip_pairs) passed silently, and a flip then kept
    its label on the mirrored side: one warning names them; COCO's and the five-keypoint layout get none."""
    src = json.loads(five["train_ann"].read_text())
    src["categories"][0]["keypoints"] = ["nose", "left_shoulder", "front_paw", "left_hip", "right_hip"]
    ann = tmp_path / "one_sided.json"
    ann.write_text(json.dumps(src))
    cfg = custom_cfg(five, tmp_path, f"data.train_ann={ann}", f"data.val_ann={ann}")
    with caplog.at_level(logging.WARNING, logger="bottomup"):
        prepare_data_root(cfg.data)
    warnings = [r.getMessage() for r in caplog.records if "flip partner" in r.getMessage()]
    assert warnings == [
        "data.keypoint_names: left_shoulder has a side but no flip partner in data.flip_pairs: left_shoulder (no "
        "right_shoulder). A horizontal flip (data.augmentation.flip_prob, test.flip_test) mirrors the image but keeps "
        "these labels, which then mark the other side; add the partner keypoints, pair them in data.flip_pairs, or "
        "set data.augmentation.flip_prob=0 and test.flip_test=false"
    ]
    caplog.clear()
    cfg = custom_cfg(five, tmp_path, "data.flip_pairs=[[left_hip,right_hip]]")  # the shoulders left out
    with caplog.at_level(logging.WARNING, logger="bottomup"):
        prepare_data_root(cfg.data)
    assert "left_shoulder, right_shoulder have a side but no flip partner" in caplog.text
    assert "left_shoulder (right_shoulder is a keypoint, not paired with it)" in caplog.text
    caplog.clear()
    for overrides in ([], ["data=coco"], ["data=crowdpose"]):
        with caplog.at_level(logging.WARNING, logger="bottomup"):
            prepare_data_root(custom_cfg(five, tmp_path, *overrides).data if not overrides else
                              compose_train_config([*overrides, f"data.root={tmp_path}"]).data)  # fmt: skip
    assert "flip partner" not in caplog.text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.flip_pairs=[[left_eye,right_eye]]"], "flip"),
        (["data.oks_sigmas=[0.1,0.1]"], "oks_sigmas has 2 values for 5 keypoints"),
        (["data.skeleton=[[nose,tail]]"], "tail"),
        (["data.joint_order=[nose]"], "joint_order must list every keypoint"),
        (["data.num_keypoints=4"], "data.num_keypoints=4 but data.keypoint_names lists 5 names"),
    ],
)
def test_bad_names_and_counts_fail_before_the_first_step(five, tmp_path: Path, overrides, message) -> None:
    cfg = custom_cfg(five, tmp_path, *overrides)
    with pytest.raises(ValueError, match=message) as err:
        train(cfg)
    assert "data" in str(err.value)
    assert not (tmp_path / "last.pt").exists()


def test_coco_config_on_a_five_keypoint_file_names_the_fix(five, tmp_path: Path) -> None:
    """data=coco with data.num_keypoints=5 alone: the message names keypoint_names and data=custom."""
    paths = [f"data.{k}={v}" for k, v in five.items()]
    cfg = compose_train_config([f"data.root={tmp_path}", *paths, "data.num_keypoints=5", *SMALL])
    with pytest.raises(ValueError, match="data.keypoint_names lists 17 names.*data=custom"):
        prepare_data_root(cfg.data)
    cfg = compose_train_config([f"data.root={tmp_path}", *paths, *SMALL])
    with pytest.raises(ValueError, match="has 5 keypoints but the data config has 17.*data=custom"):
        prepare_data_root(cfg.data)


def test_bad_skeleton_index_in_the_file_names_it(five, tmp_path: Path) -> None:
    src = json.loads(five["train_ann"].read_text())
    src["categories"][0]["skeleton"] = [[0, 1]]
    ann = tmp_path / "bad.json"
    ann.write_text(json.dumps(src))
    cfg = custom_cfg(five, tmp_path, f"data.train_ann={ann}")
    with pytest.raises(ValueError, match=r"bad.json: skeleton limb \[0, 1\].*outside 1..5"):
        complete_data_layout(cfg.data)


def test_five_keypoints_train_evaluate_and_infer(five, tmp_path: Path, coco_root: Path) -> None:
    """Only data=custom and paths: trains, evaluates with the file's category id (7) and infers 5 keypoints."""
    cfg = custom_cfg(five, tmp_path, "trainer.epochs=1", "trainer.steps_per_epoch=2", "trainer.eval_every=1",
                     "trainer.eval_max_images=6", "test.detection_threshold=0.0")  # fmt: skip
    summary = train(cfg)
    assert "ap" in summary
    results = json.loads((tmp_path / "results_val.json").read_text())
    assert results and {r["category_id"] for r in results} == {7}
    assert all(len(r["keypoints"]) == 15 for r in results)
    saved = load_checkpoint(summary["last"])
    assert "num_keypoints: 5" in saved["config"]  # the saved config is what ran
    estimator = PoseEstimator.from_checkpoint(summary["last"], device="cpu")
    image = load_image(next(five["val_images"].glob("*.jpg")))
    pred = estimator(image)
    assert pred.keypoints.shape[1:] == (5, 3)
    assert estimator.layout.keypoint_names == tuple(FIVE_KEYPOINTS)
    # inference results carry the data set's category id too (infer's results.json, Prediction.to_coco)
    assert estimator.layout.category_id == 7 and pred.category_id == 7
    assert {r["category_id"] for r in pred.to_coco(image_id=1)} == {7} and pred[:1].category_id == 7


def test_training_refuses_a_set_whose_images_are_all_missing(five, tmp_path: Path) -> None:
    """data.train_images pointing at a folder without the images used to train "0 steps" (loss nan), exit 0, and
    write best.pt / last.pt of an untrained network: exit 2 with one line, nothing written, what was there kept."""
    import os
    import subprocess
    import sys

    empty = tmp_path / "no_images"
    empty.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"an earlier run's checkpoint")
    data = json.loads(five["train_ann"].read_text())
    with_people = {a["image_id"] for a in data["annotations"]}
    used = [im["file_name"] for im in data["images"] if im["id"] in with_people]  # the images training would use
    paths = [f"data.{k}={v}" for k, v in five.items() if k != "train_images"]
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "bottomup.train", "data=custom", f"data.root={tmp_path}", *paths,
         f"data.train_images={empty}", *SMALL, "trainer.epochs=1", f"hydra.run.dir={run}"],
        cwd=repo, env={**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(repo)}, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert (
        f"data.train_images={empty}: 0 of {len(used)} annotated images of data.train_ann={five['train_ann']} exist on disk "
        f"(first missing: {used[0]}); point data.train_images at the folder that holds them"
    ) in out, out[-3000:]
    assert "Traceback" not in out and len(used) > 30
    assert sorted(p.name for p in run.iterdir() if p.suffix == ".pt") == ["last.pt"]
    assert (run / "last.pt").read_bytes() == b"an earlier run's checkpoint"


def test_training_leaves_out_missing_images_with_one_warning(five, tmp_path: Path, caplog) -> None:
    from bottomup.build import build_train_dataset

    cfg = custom_cfg(five, tmp_path)
    prepare_data_root(cfg.data)
    full = build_train_dataset(cfg.data, cfg.model.strides)
    some = tmp_path / "some"
    some.mkdir()
    names = [full.coco.imgs[i]["file_name"] for i in full.image_ids]
    for name in names[:3]:
        (some / name).symlink_to(five["train_images"] / name)
    cfg.data.train_images = str(some)
    with caplog.at_level(logging.WARNING, logger="bottomup.data"):
        ds = build_train_dataset(cfg.data, cfg.model.strides)
    assert ds.image_ids == full.image_ids[:3]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"data.train_images={some}: {len(names) - 3} of {len(names)} annotated images of data.train_ann={five['train_ann']} are "
        f"missing on disk (first missing: {names[3]}); using the other 3"
    ]


# ------------------------------------------------------------------------------------------------- fine-tuning
def test_finetuning_starts_from_the_checkpoint(quickstart_checkpoint: Path, tmp_path: Path) -> None:
    """checkpoint=: the weights are the file's (lr 0 keeps them) and the first loss is the trained net's, below a
    fresh net's on the same batch; an official-style ``.pth`` (raw state dict, DDP ``module.`` prefixes) of the same
    weights gives the very same loss."""
    base = ["experiment=quickstart", "trainer.max_steps=1", "trainer.epochs=1", "trainer.eval_every=0",
            "trainer.progress=false", "trainer.precision=fp32", "data.num_workers=0", "optim.lr=0"]  # fmt: skip
    saved = load_checkpoint(quickstart_checkpoint)
    source = saved["model"]
    # the quickstart says trainer.precision: auto; the saved config says what ran
    from omegaconf import OmegaConf

    from bottomup.models.precision import resolve_precision

    assert OmegaConf.create(saved["config"]).trainer.precision == resolve_precision("auto", "cpu")
    official = tmp_path / "pose_higher_hrnet_style.pth"
    torch.save({f"module.{k}": v for k, v in source.items()}, official)
    runs = {
        name: train(compose_train_config([*base, *extra, f"output_dir={tmp_path / name}"]))
        for name, extra in (
            ("tuned", [f"checkpoint={quickstart_checkpoint}"]),
            ("official", [f"checkpoint={official}"]),
            ("fresh", []),
        )
    }
    for name in ("tuned", "official"):
        after = load_checkpoint(runs[name]["last"])["model"]
        convs = [k for k in source if k.endswith("weight") and source[k].dim() == 4]
        assert convs and all(torch.equal(source[k], after[k]) for k in convs), name
    assert runs["official"]["loss"] == runs["tuned"]["loss"]
    assert runs["tuned"]["loss"] < 0.95 * runs["fresh"]["loss"], runs


def test_finetuning_on_other_keypoints_reinitialises_the_head(quickstart_checkpoint, five, tmp_path, caplog) -> None:
    """A K=17 checkpoint on the 5-keypoint set: the backbone is loaded, the head re-initialised with a warning."""
    saved = load_checkpoint(quickstart_checkpoint)
    from omegaconf import OmegaConf

    model_cfg = OmegaConf.create(saved["config"]).model
    arch = [
        f"model.{k}={OmegaConf.to_container(model_cfg)[k]}"
        for k in ("width", "stage_modules", "blocks_per_branch", "stem_blocks", "stem_channels")
    ]
    cfg = custom_cfg(five, tmp_path, f"checkpoint={quickstart_checkpoint}", "trainer.max_steps=1",
                     "trainer.epochs=1", *[a.replace(" ", "") for a in arch])  # fmt: skip
    with caplog.at_level(logging.INFO, logger="bottomup"):
        summary = train(cfg)
    assert "head tensors re-initialised" in caplog.text and "K=17" in caplog.text and "K=5" in caplog.text
    after = load_checkpoint(summary["last"])["model"]
    assert after["final_layers.1.weight"].shape[0] == 5
    key = "transition1.0.0.weight"
    assert after[key].shape == saved["model"][key].shape


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.width=8", r"checkpoint=.*the file is W16 \(stem 32\), K=17, the config builds W8 \(stem 32\), K=17"),
        ("model.stem_blocks=3", r"checkpoint=.*(layer1\.\d.*not in the model|missing).*model\.stem_blocks"),
        (
            "model.stem_channels=64",
            r"checkpoint=.*the file is W16 \(stem 32\), K=17, the config builds W16, K=17.*model\.stem_channels",
        ),
    ],
)
def test_finetuning_from_another_architecture_fails_clearly(quickstart_checkpoint, tmp_path, override, message) -> None:
    """Backbone tensors of another shape, or too few / too many of them, fail before the first step."""
    cfg = compose_train_config(["experiment=quickstart", f"checkpoint={quickstart_checkpoint}", override,
                                f"output_dir={tmp_path}", "trainer.progress=false"])  # fmt: skip
    prepare_data_root(cfg.data)
    model = build_model(cfg.model, 17, pretrained=False)
    from bottomup.build import load_initial_weights

    with pytest.raises(CheckpointError, match=message):
        load_initial_weights(model, quickstart_checkpoint)
    with pytest.raises(CheckpointError, match=override.split("=")[0].replace(".", r"\.")):
        train(cfg)
    assert not (tmp_path / "last.pt").exists()

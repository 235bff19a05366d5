"""Typed settings: each grouping / test-time key has one home (its default, check and docstring), the config is
validated against it, and the defects the settings layout fixed stay fixed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import compose_train_config
from omegaconf import OmegaConf

import bottomup
from bottomup.codec.settings import GROUPING_KEYS, GroupingSettings
from bottomup.engine.settings import TEST_KEYS, TestSettings, TrainerSettings

REPO = Path(__file__).resolve().parents[2]
#: Modules that import what this machine may lack at import time (a CUDA-only path) are still imported here: every
#: module of the package must import on the CPU.
SKIP_MODULES: tuple[str, ...] = ()


def _all_callables():
    """Every function, method and class constructor defined in a module of the package."""
    for info in pkgutil.walk_packages(bottomup.__path__, "bottomup."):
        if info.name.endswith("__main__") or info.name in SKIP_MODULES:
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{info.name}.{name}", obj
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    func = getattr(member, "__func__", member)
                    if inspect.isfunction(func):
                        yield f"{info.name}.{name}.{attr}", func


#: Parameters that share a grouping key's name but mean something else (each with its meaning).
OTHER_MEANINGS = {
    ("bottomup.engine.explain.Explanation.top", "max_people"): "how many people to keep for display",
    ("bottomup.engine.explain.training_snapshot", "tag_threshold"): "heatmap value masking the tag panels",
    ("bottomup.data.synthetic.render_synthetic_image", "max_people"): "people per generated image",
    ("bottomup.data.synthetic.synthetic_image", "max_people"): "people per generated image",
    ("bottomup.data.synthetic.generate_synthetic_coco", "max_people"): "people per generated image",
    ("bottomup.data.dataset.KeypointDataset.__init__", "max_people"): "data.max_people, tag rows per training image",
}
#: Where the test-time settings are taken: none of these may declare a test-time key's default either.
ESTIMATOR_MODULES = ("bottomup.api", "bottomup.engine.estimator", "bottomup.deploy.runtime", "bottomup.infer")


def test_grouping_defaults_live_in_one_place() -> None:
    """No function or method of the package declares a default for a grouping key (nor the estimator's modules
    for a test-time key): they take the settings object, and the defaults are the dataclasses' fields alone."""
    offenders, takes_settings = [], []
    for name, func in _all_callables():
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            continue
        if name.startswith(("bottomup.codec.settings.", "bottomup.engine.settings.", "bottomup.data.settings.")):
            continue  # the settings classes themselves (data.settings: data.max_people, the training M)
        keys = TEST_KEYS if name.startswith(ESTIMATOR_MODULES) or name.endswith(".run_pipeline") else GROUPING_KEYS
        for p in params.values():
            if p.name in keys and p.default is not inspect.Parameter.empty and (name, p.name) not in OTHER_MEANINGS:
                offenders.append(f"{name}({p.name}={p.default!r})")
        if "settings" in params:
            takes_settings.append(name)
    assert not offenders, offenders
    # the functions that group or run the pipeline take the object
    for name in ("group_keypoints", "group_candidates", "match_by_tag", "nms_topk", "reference_group", "run_pipeline"):
        assert any(n.endswith(f".{name}") for n in takes_settings), name


def test_conf_test_group_writes_no_default_of_its_own() -> None:
    """``conf/test/default.yaml`` holds only what depends on the data config (interpolations); every other value
    comes from the schema (the settings classes), so that it cannot drift from them."""
    text = yaml.safe_load((REPO / "conf" / "test" / "default.yaml").read_text())
    values = {k: v for k, v in text.items() if k != "defaults"}
    assert values and all(isinstance(v, str) and v.startswith("${") for v in values.values()), values
    cfg = compose_train_config([])
    assert OmegaConf.to_container(cfg.test, resolve=True) == {
        **TestSettings(input_size=int(cfg.data.input_size)).flat(),
        "max_people": int(cfg.data.max_people),
    }


def test_conf_trainer_group_holds_the_settings_defaults() -> None:
    """``conf/trainer/default.yaml`` sets no value: the composed group is :class:`TrainerSettings`' defaults."""
    import dataclasses

    text = yaml.safe_load((REPO / "conf" / "trainer" / "default.yaml").read_text())
    assert set(text) == {"defaults"}, text
    cfg = compose_train_config([])
    assert OmegaConf.to_container(cfg.trainer, resolve=True) == dataclasses.asdict(TrainerSettings())


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("test.detection_treshold=0.2", "detection_treshold"),
        ("test.flip_test=maybe", "flip_test"),
        ("trainer.epoch=3", "epoch"),
        ("trainer.progress=maybe", "progress"),
    ],
)
def test_config_is_validated_against_the_settings_at_compose_time(override: str, key: str) -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match=key):
        compose_train_config([override])


def test_settings_check_their_values_and_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"test\.nms_kernel"):
        GroupingSettings(nms_kernel=4)
    with pytest.raises(ValueError, match=r"test\.scales"):
        TestSettings(scales=(100.0,))
    with pytest.raises(ValueError, match=r"test\.precision"):
        TestSettings(precision="int4")
    with pytest.raises(ValueError, match="unknown grouping / test settings"):
        TestSettings().replace(flip=False)
    s = TestSettings().replace(detection_threshold=0.3, scales=[2, 1], flip_test=False)
    assert s.grouping.detection_threshold == 0.3 and s.scales == (2.0, 1.0) and not s.flip_test
    assert TestSettings.from_flat(s.flat()) == s
    assert tuple(GroupingSettings().as_dict()) == GROUPING_KEYS
    for bad, key in [({"epochs": 0}, "epochs"), ({"eval_every": -1}, "eval_every"), ({"precision": "int8"}, "precision"),
                     ({"dist_timeout": 0}, "dist_timeout"), ({"grad_clip": -1.0}, "grad_clip")]:  # fmt: skip
        with pytest.raises(ValueError, match=rf"trainer\.{key}"):
            TrainerSettings(**bad)


def test_a_trainer_key_added_past_the_schema_fails_before_anything_is_written(tmp_path) -> None:
    """Hydra's ``+trainer.epoch=3`` adds a key the schema does not know (its advice for ``trainer.epoch=3``): the
    run refuses it, naming the key and the known ones, before it writes or builds anything."""
    from bottomup.api import train

    cfg = compose_train_config([*_quickstart_overrides(tmp_path / "run"), "+trainer.epoch=3"])
    with pytest.raises(ValueError, match=r"unknown key\(s\) trainer\.epoch: trainer holds epochs, "):
        train(cfg)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


# --------------------------------------------------------------------------------------- defects fixed with it
class _FakeCuda(torch.Tensor):
    """A CPU tensor that says it is on a GPU and counts the full-size copies to the host."""

    copies: list[tuple[int, ...]] = []

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return torch.device("cuda", 0)

    def cpu(self, *args, **kwargs):  # type: ignore[override]
        _FakeCuda.copies.append(tuple(self.shape))
        return torch.Tensor.cpu(self.as_subclass(torch.Tensor), *args, **kwargs)


def test_grouping_copies_gpu_maps_to_the_host_once() -> None:
    """Defect: on a GPU, ``group_keypoints`` copied the heatmaps to the host twice (once itself, once in
    ``nms_topk``). Each map now crosses once; the result equals the CPU path's."""
    from bottomup.codec.grouping import group_keypoints

    rng = np.random.default_rng(0)
    det = rng.random((3, 24, 32), dtype=np.float32) ** 8
    tags = rng.normal(size=(3, 24, 32, 1)).astype(np.float32)
    expected = group_keypoints(det, tags, joint_order=[0, 1, 2])
    _FakeCuda.copies = []
    got = group_keypoints(
        torch.from_numpy(det).as_subclass(_FakeCuda),
        torch.from_numpy(tags).as_subclass(_FakeCuda),
        joint_order=[0, 1, 2],
    )
    full = [s for s in _FakeCuda.copies if s in ((3, 24, 32), (3, 24, 32, 1))]
    assert sorted(full) == [(3, 24, 32), (3, 24, 32, 1)], _FakeCuda.copies
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def _quickstart_overrides(tmp_path: Path) -> list[str]:
    return [
        "experiment=quickstart",
        "trainer.epochs=2",
        "trainer.steps_per_epoch=2",
        "trainer.eval_every=1",
        "trainer.eval_max_images=2",
        "trainer.image_every=1",
        "trainer.log_every=1",
        "trainer.channels_last=false",
        "trainer.precision=fp32",
        "data.batch_size=2",
        "data.num_workers=0",
        f"output_dir={tmp_path}",
        "trainer.progress=false",
    ]


def test_in_training_evaluation_neither_copies_again_nor_converts_the_network(tmp_path, monkeypatch) -> None:
    """Defects: with ``test.fold_bn`` every in-training evaluation and training picture deep-copied (and with
    ``test.compile`` recompiled) the network again; with ``test.channels_last`` the evaluation converted the
    training network itself to NHWC for the rest of the run. Now one folded copy is made and refreshed in place,
    and the training network keeps its memory format."""
    import bottomup.engine.trainer as trainer
    import bottomup.models.fast as fast
    from bottomup.api import train

    prepared: list[int] = []
    refreshed: list[int] = []
    formats: list[bool] = []
    real_prepare, real_refresh, real_epoch = fast.prepare_for_inference, fast.refresh_prepared, trainer.train_one_epoch

    def prepare(*args, **kwargs):
        prepared.append(1)
        return real_prepare(*args, **kwargs)

    def refresh(*args, **kwargs):
        refreshed.append(1)
        return real_refresh(*args, **kwargs)

    def epoch(model, *args, **kwargs):
        formats.append(model.conv1.weight.is_contiguous())  # NCHW, as trainer.channels_last=false says
        return real_epoch(model, *args, **kwargs)

    monkeypatch.setattr(fast, "prepare_for_inference", prepare)
    monkeypatch.setattr(fast, "refresh_prepared", refresh)
    monkeypatch.setattr(trainer, "train_one_epoch", epoch)
    cfg = compose_train_config([*_quickstart_overrides(tmp_path), "test.fold_bn=true", "test.channels_last=true"])
    summary = train(cfg)
    assert summary["step"] == 4 and np.isfinite(summary["ap"])
    assert formats == [True, True]
    assert len(prepared) == 1  # one folded copy for the whole run (2 evaluations + 4 pictures used it)
    assert len(refreshed) >= 3  # brought up to date in place before each later use


def test_infer_names_the_checkpoint_when_its_saved_scales_are_bad(coco_root, tmp_path, capsys) -> None:
    """Defect: a bad ``test.scales`` saved in a checkpoint was reported as a command-line usage error about
    ``--scales``; it is the checkpoint's, and the message says so (a ``--scales`` given on the command line is
    still the command line's)."""
    from bottomup.build import build_model
    from bottomup.engine.checkpoint import save_checkpoint
    from bottomup.infer import main

    cfg = compose_train_config([f"data.root={coco_root}", "model.width=8", "data.input_size=128", "output_dir=x"])
    model = build_model(cfg.model, 17)
    bad = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    bad.test.scales = [100.0]
    text = OmegaConf.to_yaml(bad)
    path = save_checkpoint({"model": model.state_dict(), "config": text, "epoch": 1, "step": 1}, tmp_path / "last.pt")
    image = str(coco_root / "val2017" / "000000000139.jpg")
    args = [image, "--checkpoint", str(path), "--no-progress", "--no-render", "--output-dir", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "saved test settings" in err and "test.scales" in err
    # the checkpoint's own settings are fine, the command line's are not: a usage error naming the setting
    good = save_checkpoint(
        {"model": model.state_dict(), "config": OmegaConf.to_yaml(cfg, resolve=True), "epoch": 1, "step": 1},
        tmp_path / "good" / "last.pt",
    )
    assert main([image, "--checkpoint", str(good), "--scales", "100", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--scales" in err and str(good) not in err


def test_every_backend_gives_the_same_estimator_class(quickstart_checkpoint, tmp_path) -> None:
    """``from_checkpoint`` (torch) and ``from_exported`` (ONNX Runtime) return one class with one output type."""
    from bottomup.api import PoseEstimator, Prediction
    from bottomup.deploy.export import export_model
    from bottomup.engine.people import PipelineOutput

    torch_est = PoseEstimator.from_checkpoint(quickstart_checkpoint, device="cpu")
    onnx = export_model(torch_est, tmp_path / "model.onnx", exporter="torchscript")["model"]
    exported = PoseEstimator.from_exported(onnx, threads=1)
    assert type(torch_est) is type(exported) is PoseEstimator
    assert type(PoseEstimator.from_checkpoint(onnx)) is PoseEstimator
    image = np.zeros((96, 128, 3), np.uint8)
    for est in (torch_est, exported):
        assert isinstance(est.run(image), PipelineOutput) and type(est(image)) is Prediction
    assert torch_est.backend.name == "torch" and exported.backend.name == "onnxruntime"
    assert exported.settings == torch_est.settings.replace(scales=[1.0])

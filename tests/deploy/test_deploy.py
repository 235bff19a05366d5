"""Exported models (``python -m bottomup.export``) on ONNX Runtime and OpenVINO: the same people as the torch path,
the torch-free runtime, and clear errors for bad or mismatched model files.

Real coco-mini val images, flip test on, two input shapes (square and 4:3). Three models: the quickstart network
briefly trained (session fixture ``quickstart_checkpoint``), the official-layout HigherHRNet-W32 with seeded
weights, saved as a raw ``.pth`` state dict like the official checkpoints (input 256 to keep it cheap), and a tiny
seeded ViT under the AE head (``ViTPoseAE``, experiment ``quickstart_vit`` made smaller; input 128).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from bottomup.api import PoseEstimator
from bottomup.data.io import read_image
from bottomup.deploy.export import convert_to_openvino, export_model
from bottomup.deploy.runtime import (
    EXPORT_VERSION,
    DeployedPoseEstimator,
    ModelFileError,
    legacy_metadata_path,
    metadata_path,
    read_metadata,
)

REPO = Path(__file__).resolve().parents[2]
#: coco-mini val images: 640 x 480 (4:3 landscape) and one cropped to a square; people are found in both by both models
IMAGES = ("000000018575.jpg", "000000034417.jpg")


def _inputs(coco_root: Path) -> list[np.ndarray]:
    """A 4:3 image as it is, and a square crop of another (the two input shapes)."""
    out = []
    for i, name in enumerate(IMAGES):
        img = read_image(coco_root / "val2017" / name)
        h, w = img.shape[:2]
        if i == 0:
            assert (w, h) == (640, 480), (name, img.shape)
            out.append(img)
        else:
            side = min(h, w)
            out.append(np.ascontiguousarray(img[:side, :side]))
    return out


def _export_both(estimator: PoseEstimator, folder: Path, exporter: str) -> dict[str, Path]:
    onnx = export_model(estimator, folder / "model.onnx", exporter=exporter, summary=estimator.summary)["model"]
    xml = convert_to_openvino(onnx, folder / "model.xml")["model"]
    return {"onnxruntime": onnx, "openvino": xml}


@pytest.fixture(scope="module")
def quickstart_export(quickstart_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    # 30 training steps leave weak heatmaps: a detection threshold of 0.05 (instead of 0.1) finds 10-30 people per
    # image, so that the comparison has people to compare; the JSON carries it to the runtimes. Its many weak
    # candidates give near-equal matching costs, where the Munkres default (exact-zero tests, as the official solver)
    # follows the ~1e-7 differences between torch and the runtimes' arithmetic to another optimum: scipy here, so that
    # the test compares the graphs, not the solver's choice among near-ties (the trained quickstart model agrees with
    # either solver on these images).
    estimator = PoseEstimator.from_checkpoint(
        quickstart_checkpoint, device="cpu", detection_threshold=0.05, assignment="scipy"
    )
    return estimator, _export_both(estimator, tmp_path_factory.mktemp("qs_export"), "dynamo")


@pytest.fixture(scope="module")
def w32_export(tmp_path_factory: pytest.TempPathFactory):
    from bottomup.build import build_model, compose

    folder = tmp_path_factory.mktemp("w32_export")
    cfg = compose("train", ["experiment=higherhrnet_w32"])
    torch.manual_seed(0)
    model = build_model(cfg.model, pretrained=False)
    pth = folder / "pose_higher_hrnet_w32_seeded.pth"
    torch.save(model.state_dict(), pth)  # the official checkpoints' layout: a raw state dict
    estimator = PoseEstimator.from_checkpoint(pth, experiment="higherhrnet_w32", device="cpu", input_size=256)
    return estimator, _export_both(estimator, folder, "torchscript")


#: A ViT small enough for a few seconds of export and comparison: quickstart_vit's architecture (the ViT-Ti recipe,
#: classic neck, stride 4 only) at 2 blocks of 32 channels.
TINY_VIT = [
    "experiment=quickstart_vit",
    "model.depth=2",
    "model.embed_dim=32",
    "model.num_heads=2",
    "model.neck_channels=16",
]


def seeded_vit_network(overrides: list[str] = TINY_VIT, seed: int = 0) -> tuple[torch.nn.Module, object]:
    """A seeded ``ViTPoseAE`` whose heatmaps find people (with its config): the neck's (transposed) convolutions get
    PyTorch's default initialisation instead of ViTPose's N(0, 0.001^2), so that the features, and so the heatmaps,
    vary across the image; the output convolution (``final_layers[0]``: K heatmaps, then K tags) gets N(0, 0.3^2)
    weights and heatmap biases of 0.3 (as ``conftest.biased_quickstart_network`` does for the HRNet)."""
    from bottomup.build import build_model, compose
    from bottomup.models.vit import ViTPoseAE

    cfg = compose("train", overrides)
    torch.manual_seed(seed)
    model = build_model(cfg.model, pretrained=False)
    assert isinstance(model, ViTPoseAE) and len(model.final_layers) == 1
    k = int(cfg.data.num_keypoints)
    with torch.no_grad():
        for m in model.neck.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                m.reset_parameters()
        for layer in model.final_layers:
            torch.nn.init.normal_(layer.weight, std=0.3)
            layer.bias[:k] = 0.3
    return model.eval(), cfg


@pytest.fixture(scope="module")
def vit_export(tmp_path_factory: pytest.TempPathFactory):
    # max_people 5: the random heads give hundreds of weak peaks, many on the map border, where the upsampled heatmap
    # repeats its first row / column: exact ties, which ONNX Runtime's and torch's top-k order by index and
    # OpenVINO's otherwise (30 people: ~10 of 510 keypoints swapped within a person). The 5 strongest are interior.
    # TorchScript exporter (~5 s; dynamo, ~45 s on a loaded 2-core machine, gives the same people).
    model, cfg = seeded_vit_network()
    estimator = PoseEstimator.from_config(
        cfg, model, device="cpu", input_size=128, flip_test=True, max_people=5, assignment="scipy"
    )
    return estimator, _export_both(estimator, tmp_path_factory.mktemp("vit_export"), "torchscript")


@pytest.mark.parametrize("which", ["quickstart", "w32", "vit"])
def test_exported_models_find_the_same_people_as_torch(which: str, request, coco_root: Path) -> None:
    """ONNX Runtime and OpenVINO fp32 on the exported graph vs the torch fp32 path: same people (count), keypoints
    within 0.5 px, scores within 1e-3, at a 4:3 and a square input, flip test on."""
    estimator, files = request.getfixturevalue(f"{which}_export")
    assert estimator.flip_test
    for backend, path in files.items():
        deployed = DeployedPoseEstimator(path, backend=backend, threads=1)
        assert deployed.flip_test and deployed.input_size == estimator.input_size
        for image in _inputs(coco_root):
            expected, got = estimator(image), deployed(image)
            assert len(expected) > 0, "the comparison needs people"
            assert len(got) == len(expected), (backend, image.shape)
            np.testing.assert_allclose(got.keypoints[..., :2], expected.keypoints[..., :2], atol=0.5)
            np.testing.assert_allclose(got.keypoints[..., 2], expected.keypoints[..., 2], atol=1e-3)
            np.testing.assert_allclose(got.scores, expected.scores, atol=1e-3)
            assert got.keypoint_names == expected.keypoint_names and got.skeleton == expected.skeleton


def test_export_json_holds_the_test_time_settings(quickstart_export) -> None:
    estimator, files = quickstart_export
    meta = json.loads(metadata_path(files["onnxruntime"]).read_text())
    assert meta["keypoint_names"] == list(estimator.layout.keypoint_names)
    assert meta["flip_index"] == estimator.flip_index and meta["joint_order"] == estimator.joint_order
    assert meta["input_size"] == estimator.input_size and meta["flip_test"] is True
    assert meta["grouping"] == estimator.grouping and meta["strides"] == list(estimator.codec.strides)
    assert meta["opset"] == 18 and meta["precision"] == "fp32"


#: Python preamble that makes ``import torch`` fail (a meta-path finder), for subprocess scripts.
_BLOCK_TORCH = """
import sys

class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None

sys.meta_path.insert(0, _Blocker())
"""
_NO_TORCH = (
    _BLOCK_TORCH
    + """
import bottomup
from bottomup import DeployedPoseEstimator
from bottomup.api import PoseEstimator  # noqa: F401 -- must fail: the torch API
"""
)


def test_runtime_runs_without_torch(quickstart_export, coco_root: Path, tmp_path: Path) -> None:
    """``bottomup.deploy.runtime`` neither imports torch nor needs it: in a subprocess where torch cannot be
    imported, both backends find the people the torch path finds."""
    estimator, files = quickstart_export
    image = coco_root / "val2017" / IMAGES[0]
    expected = estimator(image)
    script = _BLOCK_TORCH + textwrap.dedent(
        f"""
        import json
        from bottomup import DeployedPoseEstimator

        out = {{}}
        for backend, path in {json.dumps({k: str(v) for k, v in files.items()})}.items():
            pred = DeployedPoseEstimator(path, backend=backend, threads=1)({str(image)!r})
            out[backend] = pred.keypoints.tolist()
        print(json.dumps({{"torch_loaded": "torch" in sys.modules, "keypoints": out}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["torch_loaded"] is False
    for backend, keypoints in result["keypoints"].items():
        np.testing.assert_allclose(np.array(keypoints), expected.keypoints, atol=0.5, err_msg=backend)
    # and the blocker does block: the torch API fails in the same setting
    blocked = subprocess.run([sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, env=env, timeout=120)
    assert blocked.returncode != 0 and "torch is blocked" in blocked.stderr


def test_runtime_prediction_writes_json_without_torch(quickstart_export, coco_root: Path, tmp_path: Path) -> None:
    """``Prediction.to_json(path)`` on the torch-free runtime writes the COCO results (it imported the checkpoint
    module, and so torch, to write the file atomically)."""
    _, files = quickstart_export
    image = coco_root / "val2017" / IMAGES[0]
    out = tmp_path / "people.json"
    script = _BLOCK_TORCH + textwrap.dedent(
        f"""
        from bottomup import DeployedPoseEstimator

        pred = DeployedPoseEstimator({str(files["onnxruntime"])!r}, threads=1)({str(image)!r})
        pred.to_json({str(out)!r}, image_id=7)
        print(len(pred), "torch" in sys.modules)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    count, torch_loaded = run.stdout.split()
    results = json.loads(out.read_text())
    assert torch_loaded == "False" and len(results) == int(count) > 0
    assert {r["image_id"] for r in results} == {7} and all(len(r["keypoints"]) == 3 * 17 for r in results)


def test_plain_import_leaves_torch_out() -> None:
    code = "import sys, bottomup.deploy.runtime, bottomup.codec.grouping; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def test_input_multiple_agrees_with_the_network() -> None:
    from bottomup.data.transforms import INPUT_MULTIPLE
    from bottomup.models.hrnet import INPUT_MULTIPLE as NETWORK_MULTIPLE
    from bottomup.models.vit import ViTPoseAE

    assert INPUT_MULTIPLE == NETWORK_MULTIPLE
    # the ViT takes any multiple of its patch size (16): every input the resize gives
    assert INPUT_MULTIPLE % ViTPoseAE.input_multiple == 0


def _legacy_json(source: Path, model: Path, **changes) -> Path:
    """``model``'s JSON as exports before one JSON per model file wrote it: ``<stem>.json``, no checksums, naming
    ``model`` (``changes`` replace keys)."""
    meta = json.loads(metadata_path(source).read_text())
    meta.pop("model_sha256")
    path = legacy_metadata_path(model)
    path.write_text(json.dumps({**meta, "model_file": model.name, **changes}))
    return path


def test_bad_model_files_get_clear_errors(quickstart_export, tmp_path: Path) -> None:
    _, files = quickstart_export
    onnx = files["onnxruntime"]
    # missing JSON
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(onnx, lonely)
    with pytest.raises(ModelFileError, match=r"lonely\.onnx\.json: missing"):
        DeployedPoseEstimator(lonely)
    # a JSON that is not an export's
    (tmp_path / "lonely.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ModelFileError, match=r"lonely\.json: not a bottomup export"):
        DeployedPoseEstimator(lonely)
    # an export of another layout version (version 1 graphs output tags as (K, h, w, L))
    old = {**read_metadata(onnx), "version": EXPORT_VERSION - 1}
    (tmp_path / "lonely.json").write_text(json.dumps(old))
    with pytest.raises(ModelFileError, match=rf"lonely\.json: export version {EXPORT_VERSION - 1}.*export again"):
        DeployedPoseEstimator(lonely)
    (tmp_path / "lonely.json").write_text("{not json")
    with pytest.raises(ModelFileError, match=r"lonely\.json: not a readable JSON"):
        DeployedPoseEstimator(lonely)
    # a file that is not ONNX, with a good JSON (an older export's, without checksums, naming it)
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"this is not a model")
    _legacy_json(onnx, fake)
    with pytest.raises(ModelFileError, match=r"fake\.onnx: ONNX Runtime cannot load"):
        DeployedPoseEstimator(fake)
    with pytest.raises(ModelFileError, match=r"fake\.onnx: OpenVINO cannot read"):
        DeployedPoseEstimator(fake, backend="openvino")
    # JSON keypoints that do not match the model's heatmap channels
    meta = json.loads(metadata_path(onnx).read_text())
    k = len(meta["keypoint_names"]) - 1
    meta.update(keypoint_names=meta["keypoint_names"][:k], flip_index=list(range(k)), joint_order=list(range(k)))
    for path in files.values():
        other = tmp_path / f"other{path.suffix}"
        shutil.copy(path, other)
        if path.suffix == ".xml":
            shutil.copy(path.with_suffix(".bin"), other.with_suffix(".bin"))
        meta.pop("model_sha256", None)  # an older export's JSON, which names its model file
        other.with_suffix(".json").write_text(json.dumps({**meta, "model_file": other.name}))
        with pytest.raises(ModelFileError, match=rf"other\.json: {k} keypoint names, but other\{path.suffix} outputs"):
            DeployedPoseEstimator(other)
    # a checkpoint given to a deployed backend, an unknown suffix, a missing file
    with pytest.raises(ModelFileError, match=r"best\.pt: onnxruntime runs \.onnx files"):
        DeployedPoseEstimator(tmp_path / "best.pt", backend="onnxruntime")
    with pytest.raises(ModelFileError, match="not an exported model"):
        DeployedPoseEstimator(tmp_path / "model.bin")
    with pytest.raises(ModelFileError, match=r"gone\.onnx: no such model file"):
        DeployedPoseEstimator(tmp_path / "gone.onnx")
    # settings baked into the graph cannot be overridden at run time
    with pytest.raises(ValueError, match="max_people"):
        DeployedPoseEstimator(onnx, max_people=5)


def test_each_model_file_has_its_own_json_bound_to_it_by_checksum(quickstart_export, tmp_path: Path) -> None:
    """A ``.onnx`` and an ``.xml`` exported under one stem with other graph settings keep their own JSON each (a
    shared ``<stem>.json`` used to be rewritten by the second export, and the first model then ran with its
    settings); a JSON of another model of the same K, or a model file replaced after the export, is refused."""
    import hashlib

    estimator, files = quickstart_export
    onnx = tmp_path / "model.onnx"
    shutil.copy(files["onnxruntime"], onnx)
    shutil.copy(metadata_path(files["onnxruntime"]), metadata_path(onnx))
    other = estimator.with_settings(max_people=7)  # a graph setting (top-k)
    other_onnx = export_model(other, tmp_path / "other" / "model.onnx", exporter="torchscript")["model"]
    xml = convert_to_openvino(other_onnx, tmp_path / "model.xml")["model"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "model.bin", "model.onnx", "model.onnx.json", "model.xml", "model.xml.json"
    ]  # fmt: skip
    assert DeployedPoseEstimator(onnx).grouping["max_people"] == estimator.grouping["max_people"] != 7
    assert DeployedPoseEstimator(xml).grouping["max_people"] == 7
    meta = json.loads(metadata_path(xml).read_text())
    assert meta["model_file"] == "model.xml"
    assert meta["model_sha256"] == {
        name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in ("model.xml", "model.bin")
    }
    good = metadata_path(onnx).read_text()
    # the JSON of another model with the same K (the .xml's) beside the .onnx
    shutil.copy(metadata_path(xml), metadata_path(onnx))
    with pytest.raises(ModelFileError) as e:
        DeployedPoseEstimator(onnx)
    assert f"{metadata_path(onnx)} describes the model file 'model.xml', not {onnx}" in str(e.value)
    assert "export again" in str(e.value)
    # the model file replaced by another export's (same name, same K) after its JSON was written
    metadata_path(onnx).write_text(good)
    shutil.copy(other_onnx, onnx)
    with pytest.raises(ModelFileError) as e:
        DeployedPoseEstimator(onnx)
    assert f"{onnx} does not match {metadata_path(onnx)}: SHA-256" in str(e.value) and "export again" in str(e.value)
    # the weights of an IR changed after its export
    with open(tmp_path / "model.bin", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFileError, match=rf"model\.bin does not match {metadata_path(xml)}: SHA-256"):
        DeployedPoseEstimator(xml)


def test_a_failed_export_leaves_the_earlier_files(quickstart_export, tmp_path: Path, monkeypatch) -> None:
    """The export is staged in a temporary folder: a failure half-way (here the ONNX writer stops after half a file)
    replaces nothing and leaves no temporary files."""
    import bottomup.deploy.export as export

    estimator, files = quickstart_export
    onnx = tmp_path / "model.onnx"
    shutil.copy(files["onnxruntime"], onnx)
    shutil.copy(metadata_path(files["onnxruntime"]), metadata_path(onnx))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def stops_half_way(graph, path, input_size, exporter):
        path.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
        raise RuntimeError("the exporter was killed")

    monkeypatch.setattr(export, "_export_onnx", stops_half_way)
    for target in (onnx, tmp_path / "model.xml"):
        with pytest.raises(RuntimeError, match="killed"):
            export_model(estimator, target)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert DeployedPoseEstimator(onnx).input_size == estimator.input_size


def test_an_older_exports_shared_json_is_read_only_for_the_model_file_it_names(quickstart_export, tmp_path) -> None:
    _, files = quickstart_export
    onnx = tmp_path / "model.onnx"
    shutil.copy(files["onnxruntime"], onnx)
    _legacy_json(files["onnxruntime"], onnx)
    assert not metadata_path(onnx).exists()
    assert DeployedPoseEstimator(onnx).input_size == read_metadata(files["onnxruntime"])["input_size"]
    _legacy_json(files["onnxruntime"], onnx, model_file="model.xml")  # the stem's .xml was exported last
    with pytest.raises(ModelFileError) as e:
        DeployedPoseEstimator(onnx)
    assert f"{tmp_path / 'model.json'} describes the model file 'model.xml', not model.onnx" in str(e.value)
    assert "model.onnx.json is missing: export model.onnx again" in str(e.value)


def test_export_into_a_read_only_folder_is_a_one_line_error(
    quickstart_checkpoint: Path, quickstart_export, tmp_path: Path, capsys, monkeypatch
) -> None:
    """Exit 2 and one line naming the folder, before the checkpoint is loaded; what the folder held is kept."""
    import errno

    from bottomup.export import main

    _, files = quickstart_export
    folder = tmp_path / "ro"
    folder.mkdir()
    for path in (files["onnxruntime"], metadata_path(files["onnxruntime"])):
        shutil.copy(path, folder / path.name)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes into any folder: refuse like the kernel does for everyone else
        real_open = os.open

        def refuse(path, *args, **kwargs):
            if folder in (Path(os.fspath(path)), Path(os.fspath(path)).parent):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
    try:
        status = main([str(quickstart_checkpoint), str(folder / "model.onnx"), "--exporter", "torchscript"])
    finally:
        monkeypatch.undo()
        folder.chmod(0o755)
    err = capsys.readouterr().err
    assert status == 2
    assert f"error: cannot write model.onnx into {folder}: Permission denied" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_int8_calibration_on_few_images_warns(coco_root: Path, caplog) -> None:
    from bottomup.deploy.export import MIN_CALIBRATION_IMAGES, calibration_inputs

    images = sorted((coco_root / "train2017").glob("*.jpg"))
    with caplog.at_level("WARNING", logger="bottomup.deploy.export"):
        assert len(calibration_inputs(images[:1], 64)) == 1
    assert f"INT8 calibration on 1 image only (at least {MIN_CALIBRATION_IMAGES} recommended" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="bottomup.deploy.export"):
        assert len(calibration_inputs(images[:MIN_CALIBRATION_IMAGES], 64)) == MIN_CALIBRATION_IMAGES == 32
    assert "INT8 calibration" not in caplog.text


def test_missing_backend_names_the_extra(quickstart_export, monkeypatch: pytest.MonkeyPatch) -> None:
    _, files = quickstart_export
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "openvino", None)
    for backend, path in files.items():
        with pytest.raises(ImportError, match=r'pip install "bottomup\[deploy\]"'):
            DeployedPoseEstimator(path, backend=backend)


def test_infer_cli_runs_an_exported_model(quickstart_export, coco_root: Path, tmp_path: Path) -> None:
    """``python -m bottomup.infer --checkpoint model.xml --backend openvino`` writes the torch path's people."""
    from bottomup.infer import main

    estimator, files = quickstart_export
    image = coco_root / "val2017" / IMAGES[0]
    status = main([str(image), "--checkpoint", str(files["openvino"]), "--backend", "openvino",
                   "--output-dir", str(tmp_path), "--no-progress"])  # fmt: skip
    assert status == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results) == len(estimator(image)) > 0
    assert (tmp_path / f"{Path(IMAGES[0]).stem}.png").is_file()
    # test settings of the torch path are refused for an exported model
    assert main([str(image), "--checkpoint", str(files["onnxruntime"]), "--flip", "--output-dir", str(tmp_path)]) == 2


def test_exported_model_tracks_a_video_like_torch(quickstart_export, tmp_path: Path) -> None:
    """A video through ``python -m bottomup.infer --backend onnxruntime``: one JSON line per frame with the same people
    and track ids as the torch path (``PoseEstimator.track``); the export carries the layout's OKS sigmas."""
    from bottomup.data.synthetic_video import SyntheticVideo, write_synthetic_video
    from bottomup.infer import main

    estimator, files = quickstart_export
    clip = tmp_path / "walk.mp4"
    write_synthetic_video(clip, SyntheticVideo(seed=1, num_frames=5, width=192, height=160, num_people=2))
    meta = json.loads(metadata_path(files["onnxruntime"]).read_text())
    assert meta["oks_sigmas"] == list(estimator.layout.oks_sigmas)
    status = main([str(clip), "--checkpoint", str(files["onnxruntime"]), "--backend", "onnxruntime",
                   "--output-dir", str(tmp_path / "out"), "--no-progress", "--no-render",
                   "--track-high-score", "0.05", "--track-low-score", "0.01"])  # fmt: skip
    assert status == 0
    lines = [json.loads(line) for line in (tmp_path / "out" / "walk.jsonl").read_text().splitlines()]
    # this briefly trained model scores people below the default thresholds for starting a track (0.4)
    torch_path = [r.to_dict() for r in PoseEstimator.track(estimator, str(clip), high_score=0.05, low_score=0.01)]
    assert [r["frame"] for r in lines] == [r["frame"] for r in torch_path] == list(range(5))
    assert sum(len(r["people"]) for r in lines) > 0
    close = []
    for exported, reference in zip(lines, torch_path, strict=True):
        assert [p["track_id"] for p in exported["people"]] == [p["track_id"] for p in reference["people"]]
        for a, b in zip(exported["people"], reference["people"], strict=True):
            close.append(np.abs(np.array(a["keypoints"]) - np.array(b["keypoints"])) <= 0.5)
    # ONNX Runtime and torch round differently (by CPU kind): a refined joint of this briefly trained model, whose
    # refinement score (heatmap - rounded tag distance) ties within rounding, may land on another pixel; on an Intel
    # Xeon 1 coordinate of 51 did (2.5 px), on AMD EPYC none. Everything else agrees within 0.5 px.
    close = np.concatenate(close)
    assert close.mean() >= 0.95, f"{int((~close).sum())} of {close.size} values differ by more than 0.5"


def test_export_cli_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from bottomup.export import main

    assert main([str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt: no such file" in capsys.readouterr().err
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"junk")
    assert main([str(ckpt), str(tmp_path / "x.xml"), "--int8"]) == 2
    assert "--int8 needs --calib" in capsys.readouterr().err
    assert not (tmp_path / "x.xml").exists()
    assert main([str(ckpt), str(tmp_path / "x.xml"), "--int8", "--int8-ops", "all", "--calib", str(tmp_path)]) == 2
    assert "--int8-ops" in capsys.readouterr().err


def test_int8_export_quantises_the_network_and_still_finds_people(
    quickstart_export, coco_root: Path, tmp_path: Path, caplog
) -> None:
    """``--int8``: NNCF (OpenVINO IR) and ONNX Runtime static quantisation on real calibration images give models
    whose convolutions are quantised, the decode left in float, and that find people where fp32 does."""
    import onnx
    import openvino as ov

    from bottomup.deploy.export import network_node_names, quantize_onnx

    estimator, files = quickstart_export
    calib = sorted((coco_root / "train2017").glob("*.jpg"))[:3]
    with caplog.at_level("WARNING", logger="bottomup.deploy.export"):
        xml = convert_to_openvino(files["onnxruntime"], tmp_path / "int8.xml", int8=True, calibration=calib)["model"]
    assert "INT8 calibration on 3 images only (at least 32 recommended" in caplog.text
    q_onnx = quantize_onnx(files["onnxruntime"], tmp_path / "int8.onnx", calibration=calib)["model"]
    q_all = quantize_onnx(files["onnxruntime"], tmp_path / "int8_all.onnx", calibration=calib, ops="all")["model"]
    ov_ops = ov.Core().read_model(str(xml)).get_ops()
    ops = {op.get_type_name() for op in ov_ops}
    assert "FakeQuantize" in ops and "TopK" in ops
    network = set(network_node_names(files["onnxruntime"]))
    assert len(network) > 20
    # NNCF: no quantiser on the decode (flip average, NMS max-pool / comparison, top-k run on float heatmaps); the
    # one decode node allowed one is what feeds the network its input (the image and its mirror, quantised for
    # the first convolution). NNCF names its quantisers "<node>/fq_...".
    graph = onnx.load(str(files["onnxruntime"]), load_external_data=False).graph
    network_inputs = {i for n in graph.node if n.name in network for i in n.input}
    decode = {n.name for n in graph.node if n.name not in network}
    feeders = {n.name for n in graph.node if n.name in decode and set(n.output) & network_inputs}
    nncf_nodes = {op.get_friendly_name().split("/fq_")[0] for op in ov_ops if op.get_type_name() == "FakeQuantize"}
    assert len(nncf_nodes) > 10 and nncf_nodes & network
    assert nncf_nodes & decode <= feeders, sorted(nncf_nodes & decode)
    for path, ops_choice in ((q_onnx, "conv"), (q_all, "all")):
        nodes = onnx.load(str(path)).graph.node
        assert sum(n.op_type == "QuantizeLinear" for n in nodes) > 10 and any(n.op_type == "TopK" for n in nodes)
        consumers: dict[str, set[str]] = {}
        for n in nodes:
            for i in n.input:
                consumers.setdefault(i, set()).add(n.op_type)
        quantised = {n.name for n in nodes if consumers.get(n.output[0]) == {"QuantizeLinear"}}  # 8-bit output
        convs = [n.name for n in nodes if n.op_type == "Conv" and n.name in network]
        adds = [n.name for n in nodes if n.op_type in ("Add", "Resize") and n.name in network]
        assert convs and adds and set(convs) <= quantised, ops_choice
        # "all": the network's additions and upsampling are 8-bit too; "conv": they stay in float
        assert set(adds) <= quantised if ops_choice == "all" else not set(adds) & quantised, ops_choice
        # the decode is never quantised
        decode = [n for n in nodes if n.op_type in ("TopK", "MaxPool", "Resize") and n.name not in network]
        assert {n.op_type for n in decode} == {"TopK", "MaxPool", "Resize"} and not {n.name for n in decode} & quantised
        assert read_metadata(path)["int8_ops"] == ops_choice
    with pytest.raises(ValueError, match="--int8-ops"):
        quantize_onnx(files["onnxruntime"], tmp_path / "x.onnx", calibration=calib, ops="most")
    image = _inputs(coco_root)[0]
    expected = estimator(image)
    for path in (xml, q_onnx, q_all):
        deployed = DeployedPoseEstimator(path, threads=1)
        assert deployed.precision == "int8"
        got = deployed(image)
        assert 0 < len(got) <= 2 * len(expected)


def test_int8_export_of_a_vit_quantises_its_transformer_and_still_finds_people(
    vit_export, coco_root: Path, tmp_path: Path
) -> None:
    """``--int8`` on the ViT: NNCF quantises the transformer's matrix products (the bulk of its MACs) and leaves the
    decode in float; ONNX Runtime's default ("conv") quantises the patch embedding and the neck only (its op list
    has no MatMul: the transformer stays in float there). Both find people where fp32 does."""
    import openvino as ov

    from bottomup.deploy.export import decode_node_names, quantize_onnx

    estimator, files = vit_export
    calib = sorted((coco_root / "train2017").glob("*.jpg"))[:3]
    xml = convert_to_openvino(files["onnxruntime"], tmp_path / "int8.xml", int8=True, calibration=calib)["model"]
    q_onnx = quantize_onnx(files["onnxruntime"], tmp_path / "int8.onnx", calibration=calib)["model"]
    quantised = {
        op.get_friendly_name().split("/fq_")[0]
        for op in ov.Core().read_model(str(xml)).get_ops()
        if op.get_type_name() == "FakeQuantize"
    }
    assert any("/backbone/blocks." in n and n.endswith("MatMul") for n in quantised), sorted(quantised)
    nms = {n for n in decode_node_names(files["onnxruntime"]) if "TopK" in n or "MaxPool" in n}
    assert nms and not quantised & nms
    image = _inputs(coco_root)[0]
    expected = estimator(image)
    for path in (xml, q_onnx):
        deployed = DeployedPoseEstimator(path, threads=1)
        assert deployed.precision == "int8"
        assert 0 < len(deployed(image)) <= 2 * len(expected)


@pytest.mark.slow
def test_bench_backends_section_reports_every_backend(coco_root: Path, tmp_path: Path) -> None:
    """``python -m bottomup.bench --only backends``: network and e2e rows for torch fp32 / bf16 fast, ONNX Runtime and
    OpenVINO fp32, the three INT8s, on the same images (smoke run: tiny network and input, numbers mean nothing)."""
    from bottomup.bench import main

    out = tmp_path / "bench.json"
    argv = ["--only", "backends", "--quick", "--width", "8", "--e2e-images", "1", "--threads", "1",
            "--data-root", str(coco_root), "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    records = json.loads(out.read_text())["sections"]["backends"]
    names = {r["name"] for r in records}
    for backend in ("torch fp32", "torch bf16 fast", "onnxruntime fp32", "openvino fp32", "openvino int8",
                    "onnxruntime int8", "onnxruntime int8 all-ops"):  # fmt: skip
        assert {f"{backend} network", f"{backend} e2e"} <= names, names
    assert all(r["n"] == 1 and r["median"] > 0 for r in records)


def test_udp_travels_in_the_export_and_the_runtime_applies_it(quickstart_checkpoint: Path, coco_root: Path, tmp_path):
    """``test.udp`` is exported (JSON ``udp``, the graph's UDP aggregation: maps at the stride-2 output, not the
    input) and the torch-free runtime applies it (UDP resize, decode, mapping back): the same people as the torch
    path with ``udp=True`` on ONNX Runtime and OpenVINO; ``udp`` is part of the graph, so changing it is refused."""
    estimator = PoseEstimator.from_checkpoint(
        quickstart_checkpoint, device="cpu", detection_threshold=0.05, assignment="scipy", udp=True
    )
    assert estimator.settings.udp
    files = _export_both(estimator, tmp_path, "torchscript")
    meta = json.loads(metadata_path(files["onnxruntime"]).read_text())
    assert meta["udp"] is True and meta["resize"].startswith("MMPose 0.x UDP")
    for backend, path in files.items():
        deployed = DeployedPoseEstimator(path, backend=backend, threads=1)
        assert deployed.settings.udp
        for image in _inputs(coco_root):
            run = deployed.run(image)
            assert run.transform.udp
            assert run.heatmaps.shape[-2:] == (run.transform.size[1] // 2, run.transform.size[0] // 2)
            expected, got = estimator(image), deployed(image)
            assert len(expected) > 0, "the comparison needs people"
            assert len(got) == len(expected), (backend, image.shape)
            # UDP's DARK step (-H^-1 d of the log map) has no bound: on the flat maps of joints under the official
            # detection threshold 0.1 (this 30-step model's weak joints, 0.05-0.1) a 1e-6 difference of the maps
            # moved a joint by 0.5-27 px on an AMD EPYC; joints from 0.1 up agreed within 0.002 px there
            confident = expected.keypoints[..., 2] >= 0.1
            assert confident.sum() >= 20, "the comparison needs confident joints"
            off = np.abs(got.keypoints[..., :2] - expected.keypoints[..., :2])
            np.testing.assert_allclose(off[confident], 0.0, atol=0.5)
            assert np.median(off) < 0.05, (backend, image.shape)  # every joint went through the same UDP steps
            np.testing.assert_allclose(got.scores, expected.scores, atol=1e-3)
        with pytest.raises(ValueError, match="udp"):
            deployed.with_settings(udp=False)
    plain = json.loads(metadata_path(export_model(estimator.with_settings(udp=False), tmp_path / "p.onnx",
                                                  exporter="torchscript")["model"]).read_text())  # fmt: skip
    assert plain["udp"] is False

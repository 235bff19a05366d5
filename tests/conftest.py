"""Shared fixtures: the real test data in ``../shared/data`` (or ``$BOTTOMUP_TEST_DATA``) and keypoint layouts."""

from __future__ import annotations

import http.server
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from bottomup.core.keypoints import KeypointLayout

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

#: Workers of ``pytest -n`` (pytest-xdist, ``addopts``): each takes its share of the cores, so that the workers do
#: not fight over them (one OpenMP thread per worker on 2 cores).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // WORKERS))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The learning checks first, the longest (the quickstart) at the head and the two others after it with short
    tests between: with ``--dist loadgroup`` the first worker takes the quickstart and one short test, the others
    take everything else, so the long runs overlap instead of queueing behind each other."""
    learning = [item for item in items if item.get_closest_marker("learning")]
    if not learning:
        return
    learning.sort(key=lambda item: "quickstart" not in item.name)
    rest = [item for item in items if not item.get_closest_marker("learning")]
    head = learning[:2] + rest[:2] + learning[2:]
    items[:] = head + rest[2:]


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is downloaded in the test suite: a pretrained model's name that is not in the cache fails with the
    offline message (``BOTTOMUP_OFFLINE=1``). Tests of downloads unset it and serve files from 127.0.0.1
    (:func:`weights_server`)."""
    monkeypatch.setenv("BOTTOMUP_OFFLINE", "1")
    monkeypatch.delenv("BOTTOMUP_WEIGHTS_MIRROR", raising=False)


class _WeightsHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the server's folder; records each request; a path in ``server.cut`` is sent half, then the connection
    is closed (an interrupted transfer: the full ``Content-Length`` announced, half the bytes sent)."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append(self.path)
        if self.path in self.server.cut:
            data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def weights_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An HTTP server on 127.0.0.1 (a thread) serving ``server.root`` at ``server.url``, for download tests:
    ``server.requests`` lists the paths asked for, ``server.cut`` the paths to interrupt, ``server.stop()`` stops
    it. The cache is ``tmp_path / "cache"`` (``BOTTOMUP_CACHE``), offline mode off, no proxy for 127.0.0.1."""
    import functools
    import threading

    root = tmp_path / "mirror"
    root.mkdir()
    monkeypatch.setenv("BOTTOMUP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BOTTOMUP_OFFLINE", raising=False)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_WeightsHandler, directory=str(root)))
    server.daemon_threads = True
    server.requests, server.cut, server.root = [], set(), root
    server.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stopped = []

    def stop() -> None:
        if not stopped:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
            stopped.append(True)

    server.stop = stop
    yield server
    stop()


@pytest.fixture(autouse=True)
def _torch_threads_unchanged():
    """A test may not leave torch's thread count changed: every later test would run on fewer cores (a bench run
    in-process with ``--threads 1`` once halved the speed of the rest of the suite). Restored, and the test fails."""
    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    if after != before:
        torch.set_num_threads(before)
        pytest.fail(f"the test left torch.get_num_threads() at {after} (was {before}); restore it")


class TinyNet(nn.Module):
    """Outputs of HigherHRNet's shapes: (N, 2K, H/4, W/4) (heatmaps + tags) and (N, K, H/2, W/2)."""

    def __init__(self, k: int = 17) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.quarter = nn.Conv2d(3, 2 * k, 4, stride=4)
        self.second = nn.Conv2d(3, k, 2, stride=2)

    def forward(self, x):
        return [self.quarter(x), torch.sigmoid(self.second(x))]


def _find_data() -> Path | None:
    env = os.environ.get("BOTTOMUP_TEST_DATA")
    if env:
        return Path(env)
    default = REPO.parent / "shared" / "data"
    return default if default.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real-data folder (with ``coco-mini/`` and ``crowdpose-mini/``)."""
    root = _find_data()
    if root is None or not root.is_dir():
        pytest.skip("real test data not found: set BOTTOMUP_TEST_DATA to the shared data/ folder")
    return root


@pytest.fixture(scope="session")
def coco_root(data_root: Path) -> Path:
    """``coco-mini`` in the official COCO 2017 layout."""
    return data_root / "coco-mini"


def layout_from_config(name: str) -> KeypointLayout:
    """KeypointLayout from ``conf/data/<name>.yaml`` (following its ``defaults``)."""
    from bottomup.build import data_layout

    return data_layout(name)


@pytest.fixture(scope="session")
def coco_layout() -> KeypointLayout:
    return layout_from_config("coco")


@pytest.fixture(scope="session")
def crowdpose_layout() -> KeypointLayout:
    return layout_from_config("crowdpose")


def compose_train_config(overrides: list[str]):
    """``conf/train.yaml`` composed with ``overrides`` (no Hydra run directory is made)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def keypoint_dataset(ann_file, image_dir, keypoint_names, flip_pairs, output_strides=(4, 2), *, train=True, seed=None,
                     **settings):  # fmt: skip
    """``KeypointDataset.from_files`` with its settings given by field name (``input_size=256, mask_warp="float"``),
    each passed to the settings dataclass (``bottomup.data.settings``) that has the field."""
    import dataclasses

    from bottomup.data import AnnotationSettings, AugmentationSettings, KeypointDataset, TargetSettings

    parts = {}
    for arg, cls in (("annotations", AnnotationSettings), ("augmentation", AugmentationSettings),
                     ("targets", TargetSettings)):  # fmt: skip
        fields = {f.name for f in dataclasses.fields(cls)}
        parts[arg] = cls(**{k: settings.pop(k) for k in list(settings) if k in fields})
    if settings:
        raise TypeError(f"no settings dataclass has {sorted(settings)}")
    return KeypointDataset.from_files(
        ann_file, image_dir, keypoint_names, flip_pairs, output_strides, train=train, seed=seed, **parts
    )


@pytest.fixture(scope="session")
def quickstart_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained quickstart checkpoint (30 steps, no evaluation) for tests that need real weights; read-only.

    Trained once per test session: the first xdist worker to ask trains it under a file lock in the folder the
    workers share, the others wait and reuse it (pytest-xdist's recipe for session fixtures)."""
    from filelock import FileLock

    from bottomup.api import train

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's base folder, above each worker's own
    out = shared / "quickstart_short"
    with FileLock(str(shared / "quickstart_short.lock")):
        last = out / "last.pt"
        if not last.exists():
            overrides = ["experiment=quickstart", "trainer.epochs=1", "trainer.steps_per_epoch=30"]
            overrides += ["trainer.eval_every=0", f"output_dir={out}", "trainer.progress=false"]
            summary = train(compose_train_config(overrides))
            assert Path(summary["last"]) == last, summary["last"]
    return last


def biased_quickstart_network(experiment: str = "quickstart") -> torch.nn.Module:
    """The experiment's network, seeded, with heatmap biases that find people in any image (so that grouping has
    work): the weights the zoo and download tests serve and compare."""
    from bottomup import build

    cfg = build.compose("train", experiment=experiment)
    torch.manual_seed(0)
    model = build.build_model(cfg.model, pretrained=False)
    with torch.no_grad():
        for layer in model.final_layers:
            torch.nn.init.normal_(layer.weight, std=0.05)
            layer.bias[: int(cfg.data.num_keypoints)] = 0.3
    return model


#: The keypoints kept by :func:`write_subset_keypoint_set` (a custom 5-keypoint data set derived from coco-mini).
FIVE_KEYPOINTS = ["nose", "left_shoulder", "right_shoulder", "left_hip", "right_hip"]


def write_subset_keypoint_set(
    coco_root: Path, out: Path, keep: list[str] = FIVE_KEYPOINTS, category_id: int = 7, category_name: str = "body"
) -> dict[str, Path]:
    """coco-mini's annotations reduced to the keypoints ``keep`` under another category id and name (a user's own
    data set), written to ``out/annotations/{train,val}.json``; the images stay in coco-mini's folders.

    Returns ``{"train_ann", "val_ann", "train_images", "val_images"}``.
    """
    import json

    paths = {}
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        src = json.loads((coco_root / "annotations" / f"person_keypoints_{split}2017.json").read_text())
        names = src["categories"][0]["keypoints"]
        idx = [names.index(n) for n in keep]
        anns = []
        for a in src["annotations"]:
            kp = a["keypoints"]
            sub = [v for i in idx for v in kp[3 * i : 3 * i + 3]]
            anns.append(
                {**a, "category_id": category_id, "keypoints": sub, "num_keypoints": sum(v > 0 for v in sub[2::3])}
            )
        pos = {n: i + 1 for i, n in enumerate(keep)}
        skeleton = [
            [pos[a], pos[b]]
            for a, b in (
                ("left_shoulder", "right_shoulder"),
                ("left_shoulder", "left_hip"),
                ("right_shoulder", "right_hip"),
                ("left_hip", "right_hip"),
            )
        ]
        cat = {
            "id": category_id,
            "name": category_name,
            "supercategory": category_name,
            "keypoints": keep,
            "skeleton": skeleton,
        }
        path = out / "annotations" / f"{split}.json"
        path.write_text(json.dumps({**src, "annotations": anns, "categories": [cat]}))
        paths[f"{split}_ann"] = path
        paths[f"{split}_images"] = coco_root / f"{split}2017"
    return paths

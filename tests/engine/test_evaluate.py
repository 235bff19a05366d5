"""Tests of bottomup.evaluate: COCO / CrowdPose keypoint scoring on real annotations, and the model loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bottomup.api import evaluate
from bottomup.build import build_model, evaluate_model
from bottomup.engine.checkpoint import save_checkpoint
from bottomup.engine.evaluator import (
    COCO_STAT_NAMES,
    CROWDPOSE_STAT_NAMES,
    coco_keypoint_eval,
    people_to_results,
)

CONF = Path(__file__).resolve().parents[2] / "conf"


def _gt_as_results(ann_file: Path, score: float = 1.0) -> list[dict]:
    """Every annotated (non-crowd, >= 1 keypoint) person of ``ann_file`` as a perfect detection."""
    gt = json.loads(ann_file.read_text())
    return [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": list(a["keypoints"]), "score": score}
        for a in gt["annotations"]
        if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)
    ]


@pytest.fixture(scope="module")
def coco_val_ann(coco_root: Path) -> Path:
    return coco_root / "annotations" / "person_keypoints_val2017.json"


@pytest.fixture(scope="module")
def crowdpose_ann(data_root: Path) -> Path:
    return data_root / "crowdpose-mini" / "test_crowdpose.json"


def test_ground_truth_scores_perfect(coco_val_ann, coco_layout, capsys):
    results = _gt_as_results(coco_val_ann)
    assert len(results) == 68
    stats = coco_keypoint_eval(results, coco_val_ann, oks_sigmas=coco_layout.oks_sigmas)
    assert tuple(stats) == COCO_STAT_NAMES
    for name in ("AP", "AP50", "AP75", "AR", "AR50", "AR75"):
        assert stats[name] == pytest.approx(1.0), name
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ] = 1.000" in capsys.readouterr().out


def test_input_results_are_not_modified(coco_val_ann, coco_layout):
    results = _gt_as_results(coco_val_ann)[:5]
    before = json.dumps(results)
    coco_keypoint_eval(results, coco_val_ann, oks_sigmas=coco_layout.oks_sigmas, verbose=False)
    assert json.dumps(results) == before  # the evaluators add area / bbox / id: they work on a copy


def test_jittered_keypoints_lower_ap(coco_val_ann, coco_layout):
    rng = np.random.default_rng(0)
    results = _gt_as_results(coco_val_ann)
    for r in results:
        k = np.asarray(r["keypoints"], dtype=np.float64).reshape(-1, 3)
        k[:, :2] += rng.normal(0.0, 3.0, size=(len(k), 2))
        r["keypoints"] = k.reshape(-1).tolist()
    stats = coco_keypoint_eval(results, coco_val_ann, oks_sigmas=coco_layout.oks_sigmas, verbose=False)
    assert 0.5 < stats["AP"] < 1.0
    assert stats["AP50"] > stats["AP75"] - 1e-9


def test_missing_people_lower_recall_and_ap(coco_val_ann, coco_layout):
    results = _gt_as_results(coco_val_ann)
    kept = results[::2]
    stats = coco_keypoint_eval(kept, coco_val_ann, oks_sigmas=coco_layout.oks_sigmas, verbose=False)
    assert stats["AR"] == pytest.approx(len(kept) / len(results), abs=1e-6)
    assert stats["AP"] < 0.6


def test_wrong_sigmas_change_the_score(coco_val_ann, coco_layout):
    """The sigmas given are the ones used (tiny sigmas make 3-px errors fatal)."""
    rng = np.random.default_rng(1)
    results = _gt_as_results(coco_val_ann)
    for r in results:
        k = np.asarray(r["keypoints"], dtype=np.float64).reshape(-1, 3)
        k[:, :2] += rng.normal(0.0, 3.0, size=(len(k), 2))
        r["keypoints"] = k.reshape(-1).tolist()
    normal = coco_keypoint_eval(results, coco_val_ann, oks_sigmas=coco_layout.oks_sigmas, verbose=False)
    tiny = coco_keypoint_eval(results, coco_val_ann, oks_sigmas=[s / 10 for s in coco_layout.oks_sigmas], verbose=False)
    assert tiny["AP"] < normal["AP"] - 0.3


def test_image_ids_restrict_the_evaluation(coco_val_ann, coco_layout):
    results = _gt_as_results(coco_val_ann)
    first = results[0]["image_id"]
    only = [r for r in results if r["image_id"] == first]
    # all images: the other people are missed
    assert coco_keypoint_eval(only, coco_val_ann, oks_sigmas=coco_layout.oks_sigmas, verbose=False)["AR"] < 0.2
    sub = coco_keypoint_eval(only, coco_val_ann, oks_sigmas=coco_layout.oks_sigmas, image_ids=[first], verbose=False)
    assert sub["AP"] == pytest.approx(1.0)


def test_crowdpose_ground_truth_scores_perfect(crowdpose_ann, crowdpose_layout, capsys):
    results = _gt_as_results(crowdpose_ann)
    assert len(results) == 4  # 5 annotations, one without keypoints
    stats = coco_keypoint_eval(results, crowdpose_ann, oks_sigmas=crowdpose_layout.oks_sigmas, eval_type="crowdpose")
    assert tuple(stats) == CROWDPOSE_STAT_NAMES
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["AR"] == pytest.approx(1.0)
    # both images have crowdIndex in [0.01, 0.85): medium; easy and hard are empty (-1, COCO convention)
    assert stats["AP_medium"] == pytest.approx(1.0)
    assert stats["AP_easy"] == -1.0 and stats["AP_hard"] == -1.0
    out = capsys.readouterr().out
    assert "type=medium" in out and "type=  hard" in out


def test_crowdpose_missing_person_lowers_ap(crowdpose_ann, crowdpose_layout):
    results = _gt_as_results(crowdpose_ann)[1:]
    stats = coco_keypoint_eval(
        results, crowdpose_ann, oks_sigmas=crowdpose_layout.oks_sigmas, eval_type="crowdpose", verbose=False
    )
    assert stats["AR"] == pytest.approx(0.75)
    assert stats["AP"] < 1.0


@pytest.mark.parametrize("eval_type", ["coco", "crowdpose"])
def test_empty_results_give_zeros(eval_type, coco_val_ann, crowdpose_ann, coco_layout, crowdpose_layout):
    ann, layout = (coco_val_ann, coco_layout) if eval_type == "coco" else (crowdpose_ann, crowdpose_layout)
    with pytest.warns(RuntimeWarning, match="no keypoint results"):
        stats = coco_keypoint_eval([], ann, oks_sigmas=layout.oks_sigmas, eval_type=eval_type)
    assert set(stats.values()) == {0.0}
    assert tuple(stats) == (COCO_STAT_NAMES if eval_type == "coco" else CROWDPOSE_STAT_NAMES)


def test_bad_inputs_raise_clear_errors(coco_val_ann, coco_layout):
    good = _gt_as_results(coco_val_ann)[:1]
    with pytest.raises(ValueError, match="oks_sigmas has 14 values"):
        coco_keypoint_eval(good, coco_val_ann, oks_sigmas=[0.05] * 14)
    with pytest.raises(ValueError, match="eval_type"):
        coco_keypoint_eval(good, coco_val_ann, oks_sigmas=coco_layout.oks_sigmas, eval_type="mpii")
    with pytest.raises(ValueError, match="3 \\* 17 = 51"):
        coco_keypoint_eval(
            [{**good[0], "keypoints": good[0]["keypoints"][:-3]}], coco_val_ann, oks_sigmas=coco_layout.oks_sigmas
        )
    with pytest.raises(ValueError, match="not in the annotation file"):
        coco_keypoint_eval([{**good[0], "image_id": 1}], coco_val_ann, oks_sigmas=coco_layout.oks_sigmas)
    with pytest.raises(ValueError, match="crowdIndex"):
        coco_keypoint_eval(good, coco_val_ann, oks_sigmas=coco_layout.oks_sigmas, eval_type="crowdpose")


def test_people_to_results_format():
    kpts = np.arange(2 * 17 * 3, dtype=np.float64).reshape(2, 17, 3)
    res = people_to_results(7, kpts, np.array([0.9, 0.1]))
    assert [r["image_id"] for r in res] == [7, 7]
    assert res[0]["category_id"] == 1 and res[1]["score"] == pytest.approx(0.1)
    assert res[1]["keypoints"] == kpts[1].reshape(-1).tolist()
    assert "image_id" not in people_to_results(None, kpts, np.ones(2))[0]
    json.dumps(res)


def _tiny_model(model_cfg) -> torch.nn.Module:
    """A random width-8 net whose heatmaps exceed the detection threshold, so people are found."""
    torch.manual_seed(0)
    model = build_model(model_cfg, 17)
    with torch.no_grad():
        for layer in model.final_layers:
            torch.nn.init.normal_(layer.weight, std=0.05)
            layer.bias[:17] = 0.3
    return model


def test_evaluate_model_end_to_end(coco_root, tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"data.root={coco_root}", "model.width=8", "data.input_size=128"])
    model = _tiny_model(cfg.model)
    model.train()
    out = tmp_path / "res.json"
    stats = evaluate_model(model, cfg, device="cpu", max_images=3, output_json=out, progress=False)
    assert model.training, "the model's train mode must be restored"
    assert tuple(stats) == COCO_STAT_NAMES
    assert all(0.0 <= v <= 1.0 for v in stats.values())
    results = json.loads(out.read_text())
    gt = json.loads((coco_root / "annotations" / "person_keypoints_val2017.json").read_text())
    first3 = {img["id"]: img for img in gt["images"][:3]}
    assert results, "the biased random net should produce people"
    for r in results:
        assert set(r) == {"image_id", "category_id", "keypoints", "score"}
        assert r["image_id"] in first3 and r["category_id"] == 1
        k = np.asarray(r["keypoints"]).reshape(17, 3)
        img = first3[r["image_id"]]
        # mapped back to original-image pixels (input was 128 px on the short side)
        assert (k[:, 0] >= -1).all() and (k[:, 0] <= img["width"] + 1).all()
        assert (k[:, 1] >= -1).all() and (k[:, 1] <= img["height"] + 1).all()
    # in original-image pixels, not in those of the 128-px input
    assert max(np.asarray(r["keypoints"]).reshape(17, 3)[:, 0].max() for r in results) > 200


def test_evaluate_cli_needs_checkpoint(coco_root, tmp_path):
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "bottomup.evaluate", f"data.root={coco_root}", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "checkpoint is not set: pass checkpoint=PATH" in proc.stdout + proc.stderr


def test_evaluate_run_on_project_checkpoint(coco_root, tmp_path, capsys):
    """``run`` builds the network from the config saved in the checkpoint (width 8), not the command line's
    (experiment default: width 32), and writes ``<output_dir>/results_val.json``."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        small = compose(
            "train",
            overrides=[f"data.root={coco_root}", "model.width=8", "data.input_size=128", f"output_dir={tmp_path}"],
        )
        cfg = compose(
            "eval",
            overrides=[
                f"data.root={coco_root}",
                "data.input_size=128",
                f"output_dir={tmp_path / 'eval'}",
                f"checkpoint={tmp_path / 'last.pt'}",
                "max_images=1",
                "progress=false",
                "device=cpu",
                "test.flip_test=false",
            ],
        )
    model = _tiny_model(small.model)
    save_checkpoint(
        {"model": model.state_dict(), "config": OmegaConf.to_yaml(small, resolve=True), "epoch": 1, "step": 1},
        tmp_path / "last.pt",
    )
    stats = evaluate(cfg)
    assert tuple(stats) == COCO_STAT_NAMES
    results = json.loads((tmp_path / "eval" / "results_val.json").read_text())
    first = json.loads(Path(cfg.data.val_ann).read_text())["images"][0]["id"]
    assert results and {r["image_id"] for r in results} == {first}
    assert f"results: {tmp_path / 'eval' / 'results_val.json'}" in capsys.readouterr().out


def test_evaluate_takes_the_checkpoints_input_size_and_saves_what_ran(coco_root, tmp_path):
    """A W8 checkpoint trained at input 128, evaluated with the COCO data config (512): the run uses 128 unless the
    command line sets it, and config.yaml / metrics.json record the network and size that ran."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        small = compose(
            "train",
            overrides=[f"data.root={coco_root}", "model.width=8", "data.input_size=128", f"output_dir={tmp_path}"],
        )
        base = [f"data.root={coco_root}", f"checkpoint={tmp_path / 'last.pt'}", "max_images=1", "progress=false",
                "device=cpu", "test.flip_test=false"]  # fmt: skip
        plain = compose("eval", overrides=[*base, f"output_dir={tmp_path / 'plain'}"])
        given = ["test.input_size=192"]
        sized = compose("eval", overrides=[*base, *given, f"output_dir={tmp_path / 'sized'}"])
    assert plain.test.input_size == 512 and plain.model.width == 32  # what the command line alone would run
    model = _tiny_model(small.model)
    save_checkpoint(
        {"model": model.state_dict(), "config": OmegaConf.to_yaml(small, resolve=True), "epoch": 1, "step": 1,
         "metrics": {"best_ap": 0.25}},
        tmp_path / "last.pt",
    )  # fmt: skip
    evaluate(plain)
    metrics = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert metrics["test"]["input_size"] == 128 and tuple(metrics["metrics"]) == COCO_STAT_NAMES
    assert "W8" in metrics["model"] and "best val AP 0.250" in metrics["model"]
    ran = OmegaConf.load(tmp_path / "plain" / "config.yaml")
    assert ran.model.width == 8 and ran.test.input_size == 128
    evaluate(sized, overrides=given)
    assert json.loads((tmp_path / "sized" / "metrics.json").read_text())["test"]["input_size"] == 192


def test_evaluate_uses_the_synthetic_set_the_checkpoint_was_trained_on(quickstart_checkpoint, tmp_path):
    """``evaluate checkpoint=<quickstart> data=synthetic`` scores the quickstart's own val split (at most 4 people
    per image), not the data config's default set (5), so it repeats the training's val AP; ``data.synthetic.*`` on
    the command line still picks another set."""
    from bottomup.data.synthetic import ensure_synthetic_coco

    trained = OmegaConf.create(torch.load(quickstart_checkpoint, weights_only=True)["config"])
    own = ensure_synthetic_coco(**OmegaConf.to_container(trained.data.synthetic, resolve=True))
    base = [f"checkpoint={quickstart_checkpoint}", "data=synthetic", "max_images=2", "progress=false", "device=cpu"]
    other = ["data.synthetic.max_people=5"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        plain = compose("eval", overrides=[*base, f"output_dir={tmp_path / 'own'}"])
        given = compose("eval", overrides=[*base, *other, f"output_dir={tmp_path / 'other'}"])
    assert plain.data.synthetic.max_people == 5 != trained.data.synthetic.max_people  # the data config's default
    evaluate(plain, overrides=base)
    ran = json.loads((tmp_path / "own" / "metrics.json").read_text())
    assert ran["val_ann"] == str(own / "annotations" / "person_keypoints_val2017.json")
    assert OmegaConf.load(tmp_path / "own" / "config.yaml").data.synthetic.max_people == 4
    evaluate(given, overrides=[*base, *other])
    assert json.loads((tmp_path / "other" / "metrics.json").read_text())["val_ann"] != ran["val_ann"]


# ------------------------------------------------------------------------------------ evaluation over ranks
class _Oracle:
    """Stands in for the network: each coco-mini val image's annotated people, 1-3 px off, scores from their ids;
    counts the images it is shown."""

    def __init__(self, ann_file: Path, image_dir: Path) -> None:
        from bottomup.data.io import load_annotated_image

        gt = json.loads(ann_file.read_text())
        rng = np.random.default_rng(0)
        self.people: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        for img in gt["images"]:
            anns = [a for a in gt["annotations"] if a["image_id"] == img["id"] and a.get("num_keypoints", 0) > 0]
            kpts = np.array([a["keypoints"] for a in anns], np.float64).reshape(-1, 17, 3)
            kpts[..., :2] += rng.uniform(-3, 3, kpts[..., :2].shape)
            kpts[..., 2] = (kpts[..., 2] > 0) * 0.9
            scores = np.array([0.5 + (a["id"] % 97) / 200 for a in anns])
            image = load_annotated_image(image_dir / img["file_name"], img.get("height"), img.get("width"))
            self.people[image.tobytes()[::4099]] = (kpts, scores)
        self.seen = 0

    def __call__(self, image: np.ndarray):
        from types import SimpleNamespace

        self.seen += 1
        kpts, scores = self.people[image.tobytes()[::4099]]
        return SimpleNamespace(keypoints=kpts, scores=scores)


def _thread_shards(world: int) -> list:
    """``world`` :class:`EvalShard` objects whose gather / broadcast meet across threads (as ranks meet across
    processes in ``torch.distributed``)."""
    import threading

    from bottomup.engine.evaluator import EvalShard

    barrier = threading.Barrier(world)
    slots: list = [None] * world
    box: list = [None]

    def make(rank: int) -> EvalShard:
        def gather(obj):
            slots[rank] = obj
            barrier.wait()
            out = list(slots) if rank == 0 else None
            barrier.wait()
            return out

        def broadcast(obj):
            if rank == 0:
                box[0] = obj
            barrier.wait()
            out = box[0]
            barrier.wait()
            return out

        return EvalShard(rank, world, gather, broadcast)

    return [make(r) for r in range(world)]


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_evaluation_equals_one_process(coco_root, coco_layout, tmp_path, world):
    """Issue 29: each rank evaluates its share of the 79 val images (every image exactly once), rank 0 writes the
    people of all in the annotation file's order and scores them: the results file and every AP equal those of one
    process; every rank returns the scores."""
    import threading

    from bottomup.engine.evaluator import ValSet
    from bottomup.engine.evaluator import evaluate_model as evaluate_estimator

    val = ValSet(coco_root / "annotations" / "person_keypoints_val2017.json", coco_root / "val2017", coco_layout)
    one = _Oracle(val.ann_file, val.image_dir)
    single = evaluate_estimator(one, val, output_json=tmp_path / "one.json", progress=False)
    assert single["AP"] > 0.5 and one.seen == 79

    oracles = [_Oracle(val.ann_file, val.image_dir) for _ in range(world)]
    stats: list = [None] * world

    def rank(r: int, shard) -> None:
        stats[r] = evaluate_estimator(oracles[r], val, output_json=tmp_path / f"shard{r}.json", progress=False,
                                      shard=shard)  # fmt: skip

    threads = [threading.Thread(target=rank, args=(r, s)) for r, s in enumerate(_thread_shards(world))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [o.seen for o in oracles] == [len(range(r, 79, world)) for r in range(world)]
    assert all(s == single for s in stats), (stats, single)
    assert (tmp_path / "shard0.json").read_text() == (tmp_path / "one.json").read_text()
    assert not any((tmp_path / f"shard{r}.json").exists() for r in range(1, world)), "only rank 0 writes"


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")  # one torchrun rendezvous at a time
def test_evaluate_under_torchrun_equals_one_process(coco_root, tmp_path):
    """``torchrun --nproc_per_node 2 -m bottomup.evaluate``: two gloo processes write the same results and AP table
    as one (a biased random width-8 net that finds people on coco-mini val, 12 images)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train", overrides=[f"data.root={coco_root}", "model.width=8", "data.input_size=128", "output_dir=unused"]
        )
    ckpt = save_checkpoint(
        {"model": _tiny_model(cfg.model).state_dict(), "config": OmegaConf.to_yaml(cfg, resolve=True), "epoch": 1,
         "step": 1},
        tmp_path / "run" / "last.pt",
    )  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "bottomup.evaluate", f"checkpoint={ckpt}", f"data.root={coco_root}", "device=cpu", "max_images=12",
            "progress=false"]  # fmt: skip
    runs = {
        "one": [sys.executable, *args],
        "two": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args],
    }
    for name, cmd in runs.items():
        res = subprocess.run([*cmd, f"hydra.run.dir={tmp_path / name}"], env=env, capture_output=True, text=True,
                             timeout=600)  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
    one, two = (json.loads((tmp_path / n / "results_val.json").read_text()) for n in runs)
    assert one and two == one
    metrics = [json.loads((tmp_path / n / "metrics.json").read_text())["metrics"] for n in runs]
    assert metrics[0] == metrics[1]

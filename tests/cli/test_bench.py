"""Tests of ``bottomup.bench``: the quick run works end to end and reports every section; the MAC count is right.

No timing assertions: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bottomup.bench import DEFAULT_SECTIONS, count_macs, main
from bottomup.models import HigherHRNet

REPO = Path(__file__).resolve().parents[2]


def _check_records(section: str, records: list[dict]) -> None:
    assert records, f"section {section} has no measurement"
    for r in records:
        stats = [r["min"], r["median"], r["max"]]
        assert all(isinstance(v, float) and math.isfinite(v) for v in stats), (section, r)
        assert r["min"] <= r["median"] <= r["max"], (section, r)
        assert r["n"] == len(r["values"]) >= 1, (section, r)
        assert r["unit"] and r["name"], (section, r)


def test_quick_run_reports_every_section(coco_root: Path, tmp_path: Path) -> None:
    """``python -m bottomup.bench --quick --json PATH`` exits 0 and the JSON has numeric min/median/max."""
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "bottomup.bench", "--quick", "--device", "cpu", "--data-root", str(coco_root)]
        # one thread: on a busy CI machine two OpenMP threads can wait for each other for minutes
        + ["--threads", "1", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "machine:" in proc.stdout and "torch" in proc.stdout
    report = json.loads(out.read_text())
    assert set(report["sections"]) == set(DEFAULT_SECTIONS)
    assert report["machine"]["torch"] == torch.__version__
    assert report["settings"]["quick"] is True
    assert report["machine"]["torch_threads"] == 1

    for section in DEFAULT_SECTIONS:
        _check_records(section, report["sections"][section])

    names = {section: [r["name"] for r in report["sections"][section]] for section in DEFAULT_SECTIONS}
    assert any(n.startswith("fp32") for n in names["forward"]) and any(n.startswith("bf16") for n in names["forward"])
    data = report["sections"]["data"]
    assert [r["info"].get("per_core") for r in data] == [True, None, None, None]  # dataset[i] on one core first
    assert [r["info"]["workers"] for r in data[1:]] == [0, 1, 2]
    train = report["sections"]["train"]
    assert {r["info"]["precision"] for r in train} == {"fp32", "bf16"}
    assert all(r["info"]["batch"] == 2 for r in train)
    curves = [r for r in train if r["unit"] == "% max rel. diff"]  # loss curves vs fp32 from equal weights
    assert {r["info"]["precision"] for r in curves} == {"bf16"}  # --quick: contiguous only, fp32 is the reference
    for curve in curves:
        assert curve["info"]["steps"] == len(curve["info"]["losses"]) == len(curve["info"]["fp32_losses"]) >= 2
    assert any(n.endswith("folded") for n in names["forward"])  # BN folded, weights in the precision itself
    flops = {r["name"]: r for r in report["sections"]["flops"]}
    # both MAC counts agree, and the forward's GFLOP/s is 2 * MACs / forward time
    counted = flops["forward MACs (FlopCounterMode)"]["median"]
    assert counted == pytest.approx(flops["forward MACs (analytic)"]["median"], rel=1e-9)
    fwd_ms = min(
        r["median"]
        for r in report["sections"]["forward"]
        if r["info"]["precision"] == "fp32" and not r["info"].get("folded_bn")  # the model as counted, BN included
    )
    assert flops["forward fp32"]["median"] == pytest.approx(2 * counted / (fwd_ms * 1e-3), rel=1e-6)
    assert "pct_of_probe" in flops["forward fp32"]["info"]
    # the compute floor is the forward's FLOPs at the matmul probe's rate (odd repeat count: median maps to median)
    for precision in ("fp32", "bf16"):
        probe = next(r for n, r in flops.items() if n.startswith(f"matmul probe {precision}"))
        floor_ms = flops[f"forward floor {precision} at the probe's rate"]["median"]
        assert floor_ms == pytest.approx(2 * counted / probe["median"] * 1e3, rel=1e-6)  # GMAC, GFLOP/s
    memory = report["sections"]["memory"]
    assert {r["name"] for r in memory} >= {"inference fp32 batch 1", "train step fp32 batch 2"}
    assert all(r["min"] > 10 for r in memory)  # MiB of a process that imported torch
    assert {r["info"]["flip"] for r in report["sections"]["e2e"]} == {False, True}
    assert any(r["info"].get("fold_bn") for r in report["sections"]["e2e"])
    size = report["settings"]["size"]
    for w, h in report["sections"]["e2e"][0]["info"]["input_sizes"]:  # short side = size, long side k * 64
        assert min(w, h) == size and max(w, h) % 64 == 0 and max(w, h) >= size, (w, h)


def test_macs_of_higherhrnet_w32_512() -> None:
    """FlopCounterMode and the per-layer count agree on 46.2 G multiply-adds (transposed conv included)."""
    with torch.device("meta"):
        model = HigherHRNet(width=32)
    macs = count_macs(model, 512, torch.device("meta"))
    assert macs["flop_counter"] == macs["analytic"]
    assert macs["flop_counter"] / 1e9 == pytest.approx(46.2, abs=0.05)
    # the one deconvolution: 32 features + 34 outputs = 66 -> 32 channels, 4x4 kernel, 128x128 input
    assert macs["analytic_transposed"] == 66 * 32 * 16 * 128 * 128 == macs["flop_counter_transposed"]


def test_missing_data_root_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--quick", "--only", "data", "--data-root", str(tmp_path / "nowhere")])
    assert "coco-mini not found" in str(err.value) and "--data-root" in str(err.value)


def test_unknown_section_is_rejected() -> None:
    with pytest.raises(SystemExit) as err:
        main(["--quick", "--only", "forward,speed"])
    assert "speed" in str(err.value)


def test_grouping_reference_gives_identical_outputs(
    coco_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--only grouping_reference``: the fast grouping equals the loop reference (exit status 0), per flip setting."""
    out = tmp_path / "ref.json"
    argv = ["--only", "grouping_reference", "--grouping-images", "2", "--data-root", str(coco_root)]
    status = main([*argv, "--json", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    verdicts = [line for line in printed.splitlines() if line.startswith("speedup: ")]  # one per flip setting
    assert len(verdicts) == 2 and all(line.endswith("identical outputs: True") for line in verdicts), printed
    assert "FAILED" not in printed
    records = json.loads(out.read_text())["sections"]["grouping_reference"]
    _check_records("grouping_reference", records)
    assert {(r["info"]["flip"], r["info"]["implementation"]) for r in records if "implementation" in r["info"]} == {
        (flip, impl) for flip in (False, True) for impl in ("fast", "reference")
    }
    assert all(r["info"]["identical"] is True and r["info"]["images"] == 2 for r in records)


def test_grouping_reference_mismatch_exits_1(
    coco_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outputs that differ from the reference's give exit status 1 and say so."""
    import bottomup.bench.grouping as bench_grouping

    real = bench_grouping.reference_group

    def one_person_too_many(det: np.ndarray, tag: np.ndarray, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        kp, _ = real(det, tag, **kwargs)
        return np.zeros((kp.shape[0] + 1, *kp.shape[1:]), kp.dtype), np.zeros(kp.shape[0] + 1, np.float32)

    monkeypatch.setattr(bench_grouping, "reference_group", one_person_too_many)
    status = main(["--only", "grouping_reference", "--grouping-images", "1", "--data-root", str(coco_root)])
    printed = capsys.readouterr().out
    assert status == 1
    assert "identical outputs: False" in printed and "FAILED: grouping_reference" in printed


def test_macs_of_vitpose_b_512() -> None:
    """A ViT's MACs: FlopCounterMode (with the CPU attention kernel's formula, ``FLOP_FORMULAS``) and the per-layer
    count agree: 12 blocks of 12 T C^2 (qkv, proj, MLP) + 2 T^2 C (attention), T = 1024 tokens, C = 768, then the
    patch embedding and the classic neck; 114.6 G, 2.5x HigherHRNet-W32's."""
    from bottomup.models.vit import ViTPoseAE

    with torch.device("meta"):
        model = ViTPoseAE("base", strides=[4])
    macs = count_macs(model, 512, torch.device("meta"))
    assert macs["flop_counter"] == macs["analytic"]
    t, c = 1024, 768
    assert macs["analytic_attention"] == 12 * 2 * t * t * c
    assert macs["analytic_linear"] == 12 * 12 * t * c * c
    assert macs["flop_counter"] / 1e9 == pytest.approx(114.56, abs=0.05)


def test_attention_on_cpu_is_counted() -> None:
    """The CPU kernel of ``scaled_dot_product_attention`` (which FlopCounterMode has no formula for) is counted, on a
    real tensor as on meta: a tiny ViT's two counts agree."""
    from bottomup.models.vit import ViTPoseAE

    model = ViTPoseAE("custom", embed_dim=32, depth=1, num_heads=2, neck_channels=8, strides=[4])
    macs = count_macs(model, 64, torch.device("cpu"))
    assert macs["analytic_attention"] == 2 * 16 * 16 * 32
    assert macs["flop_counter"] == macs["analytic"]


def test_experiments_are_benchmarked_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--experiment A,B --only forward,flops``: each experiment's network (a ViT, an HRNet) in turn, rows prefixed
    with its name: MACs, parameters and forward times of both in one run."""
    out = tmp_path / "bench.json"
    argv = ["--quick", "--only", "forward,flops", "--precisions", "fp32", "--threads", "1", "--device", "cpu"]
    assert main([*argv, "--experiment", "quickstart_vit,quickstart", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "quickstart_vit, quickstart, input 64" in printed
    report = json.loads(out.read_text())
    for section in ("forward", "flops"):
        _check_records(section, report["sections"][section])
    flops = {r["name"]: r for r in report["sections"]["flops"]}
    forward = {r["name"] for r in report["sections"]["forward"]}
    for name in ("quickstart_vit", "quickstart"):
        assert f"{name}: fp32 contiguous" in forward and f"{name}: fp32 contiguous folded" in forward
        counted = flops[f"{name}: forward MACs (FlopCounterMode)"]["median"]
        assert counted == pytest.approx(flops[f"{name}: forward MACs (analytic)"]["median"], rel=1e-9)
        assert flops[f"{name}: parameters"]["unit"] == "M"
    vit = flops["quickstart_vit: forward MACs (FlopCounterMode)"]["info"]["macs"]
    assert vit["analytic_attention"] > 0 and vit["analytic_linear"] > 0
    assert flops["quickstart: forward MACs (FlopCounterMode)"]["info"]["macs"]["analytic_attention"] == 0
    assert flops["quickstart_vit: parameters"]["median"] != flops["quickstart: parameters"]["median"]


def test_experiment_and_width_are_exclusive() -> None:
    with pytest.raises(SystemExit) as err:
        main(["--quick", "--only", "forward", "--experiment", "vitpose_b_ae", "--width", "48"])
    assert "--width" in str(err.value)
    with pytest.raises(SystemExit) as err:
        main(["--quick", "--only", "forward", "--experiment", "no_such_experiment"])
    assert "no_such_experiment" in str(err.value)


def test_quick_machine_summary(coco_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--only summary`` (issue 29): matmul probe per precision, forward per precision x layout x folding against
    official fp32 (contiguous, BN unfolded) in the same run, what ``auto`` picks, training images/s of the quickstart
    network and of W``--width``, and the compact block after the table."""
    out = tmp_path / "summary.json"
    argv = ["--quick", "--only", "summary", "--width", "8", "--threads", "1", "--device", "cpu"]
    assert main([*argv, "--data-root", str(coco_root), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    records = report["sections"]["summary"]
    _check_records("summary", records)
    names = {r["name"]: r for r in records}
    assert {"matmul probe fp32", "matmul probe bf16"} <= set(names)
    paths = ["fp32", "fp32 channels_last", "fp32 channels_last folded", "bf16", "bf16 channels_last",
             "bf16 channels_last folded"]  # fmt: skip
    for path in paths:
        ratio = names[f"forward {path}"]["info"]["speedup_vs_official_fp32"]
        assert ratio == pytest.approx(names["forward fp32"]["median"] / names[f"forward {path}"]["median"])
    assert names["forward fp32"]["info"]["speedup_vs_official_fp32"] == 1.0
    assert any(n.startswith("auto picks: ") for n in names)
    trained = {(r["info"]["network"], r["info"]["precision"]) for r in records if r["unit"] == "images/s"}
    assert trained == {(net, p) for net in ("quickstart", "W8-64") for p in ("fp32", "bf16")}
    block = printed[printed.index("== machine summary ==") :]
    for needle in ("matmul probe", "official fp32", "test.precision=auto picks", "trainer.precision=auto picks",
                   "training images/s", "INT8"):  # fmt: skip
        assert needle in block, block
    assert report["summary"] and report["summary"][0].startswith("machine summary")


def test_tracking_section_reports_each_video_and_their_spread(
    quickstart_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--only tracking --tracking-videos N`` with a checkpoint: a row per video (up to seed 2), one over all N whose
    values are those videos' IDF1 and whose info holds their means, the still-image clip's two rows, the tracker's
    cost; ``--tracking-videos 0`` is refused."""
    out = tmp_path / "tracking.json"
    argv = ["--quick", "--only", "tracking", "--checkpoint", str(quickstart_checkpoint), "--json", str(out)]
    assert main([*argv, "--tracking-videos", "4"]) == 0, capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["settings"]["tracking_videos"] == 4
    records = {r["name"]: r for r in report["sections"]["tracking"]}
    _check_records("tracking", list(records.values()))
    seeds = [records[f"synthetic video seed {seed} IDF1"] for seed in range(3)]
    assert "synthetic video seed 3 IDF1" not in records  # seeds from 3 on only in the spread
    spread = records["synthetic videos seeds 0-3: IDF1"]
    assert spread["n"] == spread["info"]["videos"] == 4
    assert spread["values"][:3] == [r["info"]["idf1"] for r in seeds]
    assert spread["info"]["mean_idf1"] == pytest.approx(np.mean(spread["values"]))
    assert spread["info"]["mean_num_switches"] * 4 >= sum(r["info"]["num_switches"] for r in seeds)
    assert {"still-image clip: id kept one frame later", "still-image clip: id kept, confident in both frames"} <= set(
        records
    )
    assert {"PoseTracker.update, 4 people", "PoseTracker.update, 13 people"} <= set(records)
    with pytest.raises(SystemExit, match="--tracking-videos 0 must be >= 1"):
        main([*argv, "--tracking-videos", "0"])

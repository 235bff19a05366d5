"""Pose estimation on your own images: ``python -m bottomup.infer IMAGES... [options]``.

Examples::

    python -m bottomup.infer photo.jpg                          # newest checkpoint under outputs/
    python -m bottomup.infer photos/ 'more/*.png' --checkpoint outputs/coco_higherhrnet_w32/2025-01-01_00-00-00/best.pt
    python -m bottomup.infer img.jpg --checkpoint pose_higher_hrnet_w32_512.pth --experiment higherhrnet_w32
    python -m bottomup.infer coco/val2017 --no-render --scales 2 1 0.5 --min-score 0.1
    python -m bottomup.infer photo.jpg --checkpoint best.onnx --backend onnxruntime   # exported (bottomup.export)

Inputs: image files, folders (their image files, not recursive, sorted by name) and glob patterns (quote them
so that the shell does not expand them first). Outputs in ``--output-dir`` (default ``outputs/infer``):

* ``results.json``: COCO keypoint results, one dict per detected person,
  ``{"file_name", "image_id" (when known), "category_id" (the model's data set's, ``data.category_id``), "keypoints": [x, y, score] * K, "score", "bbox"}``
  in original-image pixels (``bbox``: ``[x, y, w, h]`` around the detected joints); ``--min-score`` drops people. ``image_id`` is known when the file name is a COCO / CrowdPose id (all digits, e.g.
  ``000000000785.jpg`` -> 785), so results on a data set's images can be scored with
  :func:`bottomup.engine.evaluator.coco_keypoint_eval`.
* ``<image stem>.png`` per input (unless ``--no-render``): the image with each person's skeleton in its own
  colour and its score; people below ``--draw-min-score`` (0.1) and joints at or below ``--joint-threshold`` (0.1)
  are not drawn, and images smaller than ``--min-side`` (640 px) are upscaled first.

Checkpoint: ``--checkpoint`` takes this project's ``last.pt`` / ``best.pt`` (their config is inside) or an
official HigherHRNet ``.pth`` (then ``--experiment`` says which network it is), or a model exported by
``python -m bottomup.export`` (``.onnx`` / OpenVINO ``.xml``, its JSON beside it), which ``--backend onnxruntime`` /
``openvino`` runs (default by the suffix; the test settings are the exported ones). Without ``--checkpoint`` the
newest run under ``./outputs/`` is used: the run folder whose ``best.pt`` / ``last.pt`` was written last, and
in it ``best.pt`` (best validation AP) when it exists, else ``last.pt``.

Exit status: 0 all inputs processed; 1 some input failed (unreadable image; reported and skipped); 2 usage
error (no input matched, no checkpoint, bad option or checkpoint).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

QUICKSTART = "python -m bottomup.train experiment=quickstart"


class UsageError(Exception):
    """Bad command line (exit status 2)."""


def _parser() -> argparse.ArgumentParser:
    from bottomup.vis.draw import PLOT_DEFAULTS  # cv2 only: --help stays torch-free

    p = argparse.ArgumentParser(
        prog="python -m bottomup.infer",
        description="Detect people and their keypoints in images; write COCO-format results and renderings.",
        epilog="Exit status: 0 all inputs done, 1 some input failed, 2 usage error.",
    )
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument(
        "--checkpoint",
        help="this project's last.pt / best.pt, or an official HigherHRNet .pth (needs --experiment); "
        "default: the newest run under ./outputs (best.pt, else last.pt)",
    )
    p.add_argument(
        "--experiment",
        help="conf/experiment name the network was built with (e.g. higherhrnet_w32); required for official .pth",
    )
    p.add_argument("--output-dir", default="outputs/infer", help="where to write results.json and PNGs")
    p.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, default=None, help="flip test (default: the config's)"
    )
    p.add_argument("--scales", type=float, nargs="+", help="test scales, e.g. 2 1 0.5 (default: the config's)")
    p.add_argument("--detection-threshold", type=float, help="minimum heatmap peak to start a joint")
    p.add_argument("--tag-threshold", type=float, help="maximum tag distance to join a person")
    p.add_argument(
        "--min-score", type=float, default=0.0, help="leave people scoring below this out of results.json (default 0)"
    )
    draw = p.add_argument_group("pictures")
    draw.add_argument(
        "--draw-min-score",
        type=float,
        default=PLOT_DEFAULTS["min_score"],
        help="draw people scoring at least this (default %(default)s)",
    )
    draw.add_argument(
        "--joint-threshold",
        type=float,
        default=PLOT_DEFAULTS["joint_threshold"],
        help="draw joints scoring above this (default %(default)s)",
    )
    draw.add_argument(
        "--min-side",
        type=int,
        default=int(PLOT_DEFAULTS["min_side"]),
        help="upscale smaller pictures to this longer side, pixels, so that labels stay legible (default %(default)s)",
    )
    draw.add_argument("--radius", type=int, help="joint radius, pixels of the picture (default: from its size)")
    draw.add_argument("--thickness", type=int, help="limb width, pixels of the picture (default: from its size)")
    draw.add_argument("--no-labels", action="store_true", help="do not write person scores")
    p.add_argument(
        "--backend",
        choices=["torch", "onnxruntime", "openvino"],
        help="torch runs a checkpoint; onnxruntime / openvino run a model exported by python -m bottomup.export "
        "(--checkpoint model.onnx / model.xml; default: by its suffix)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        help="network precision (default: the config's, fp32); bf16 is ~2x faster on CPUs with AVX-512 BF16",
    )
    p.add_argument("--channels-last", action="store_true", help="NHWC network input (faster with oneDNN / cuDNN)")
    p.add_argument(
        "--fold-bn",
        action="store_true",
        help="fold BatchNorm into the convs and cast the weights to --precision (fastest CPU path with bf16)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the network (the first image compiles)")
    p.add_argument("--no-render", action="store_true", help="write results.json only, no PNGs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _load_exported(args: argparse.Namespace, checkpoint: Path) -> Any:
    """``PoseEstimator.from_exported``: an exported model on ONNX Runtime / OpenVINO (``--backend``)."""
    from bottomup.api import PoseEstimator

    fixed = [
        flag
        for flag, given in (
            ("--flip / --no-flip", args.flip is not None),
            ("--scales", bool(args.scales)),
            ("--precision", args.precision is not None),
            ("--channels-last", args.channels_last),
            ("--fold-bn", args.fold_bn),
            ("--compile", args.compile),
            ("--experiment", args.experiment is not None),
        )
        if given
    ]
    if fixed:
        raise UsageError(
            f"{', '.join(fixed)}: not for an exported model ({checkpoint} holds its test settings; export again "
            "with python -m bottomup.export to change them)"
        )
    if args.device == "cuda":
        raise UsageError("--device cuda: exported models run on the CPU (onnxruntime / openvino)")
    settings: dict[str, Any] = {}
    if args.detection_threshold is not None:
        settings["detection_threshold"] = float(args.detection_threshold)
    if args.tag_threshold is not None:
        settings["tag_threshold"] = float(args.tag_threshold)
    backend = None if args.backend in (None, "torch") else args.backend
    return PoseEstimator.from_exported(checkpoint, backend=backend, **settings)


def _load_estimator(args: argparse.Namespace, checkpoint: Path) -> Any:
    """``PoseEstimator`` from the checkpoint, with the command-line test settings."""
    from bottomup.api import EXPORTED_SUFFIXES, PoseEstimator

    if args.backend == "torch" and checkpoint.suffix in EXPORTED_SUFFIXES:
        raise UsageError(
            f"--backend torch runs checkpoints (.pt / .pth); {checkpoint} is exported: --backend onnxruntime / openvino"
        )
    if args.backend not in (None, "torch") or checkpoint.suffix in EXPORTED_SUFFIXES:
        return _load_exported(args, checkpoint)
    from bottomup.engine.distributed import resolve_device

    try:
        device = resolve_device(args.device, key="--device")
    except ValueError as e:
        raise UsageError(str(e)) from e
    overrides: dict[str, Any] = {}
    if args.flip is not None:
        overrides["flip_test"] = bool(args.flip)
    if args.scales:
        overrides["scales"] = [float(s) for s in args.scales]
    if args.detection_threshold is not None:
        overrides["detection_threshold"] = float(args.detection_threshold)
    if args.tag_threshold is not None:
        overrides["tag_threshold"] = float(args.tag_threshold)
    if args.precision is not None:
        overrides["precision"] = args.precision
    for flag in ("channels_last", "fold_bn", "compile"):
        if getattr(args, flag):
            overrides[flag] = True
    return PoseEstimator.from_checkpoint(checkpoint, experiment=args.experiment, device=device, **overrides)


def _checkpoint_error(args: argparse.Namespace, checkpoint: Path, e: Exception) -> UsageError:
    """A load failure as a usage error naming the file (and the experiments, when one is needed)."""
    hint = ""
    if args.experiment is None and isinstance(e, ValueError) and "experiment" in str(e):
        from bottomup.build import experiments

        hint = f"\nOn the command line: --experiment NAME, one of: {', '.join(experiments())}"
    from bottomup.engine.checkpoint import CheckpointError

    if isinstance(e, CheckpointError):  # its message names the file already
        return UsageError(f"{e}{hint}")
    return UsageError(f"cannot use checkpoint {checkpoint}: {e}{hint}")


def _image_id(path: Path) -> int | None:
    return int(path.stem) if path.stem.isdigit() else None


def _png_path(out_dir: Path, src: Path, used: set[str]) -> Path:
    name, i = f"{src.stem}.png", 1
    while name in used:
        i += 1
        name = f"{src.stem}_{i}.png"
    used.add(name)
    return out_dir / name


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (see the module docstring)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from bottomup.data.io import expand_inputs
    from bottomup.engine.checkpoint import find_checkpoint

    for flag in ("min_score", "draw_min_score", "joint_threshold"):
        if not 0.0 <= getattr(args, flag) <= 1.0:  # NaN fails too
            raise UsageError(f"--{flag.replace('_', '-')} must be in [0, 1] (a score), got {getattr(args, flag)}")
    for flag in ("min_side", "radius", "thickness"):
        if getattr(args, flag) is not None and not 1 <= getattr(args, flag) <= 8192:
            raise UsageError(f"--{flag.replace('_', '-')} must be in [1, 8192] pixels, got {getattr(args, flag)}")
    out_dir = Path(args.output_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(
            f"--output-dir {out_dir}: cannot make this folder ({e.strerror or e}); give a folder path"
        ) from e
    files, unmatched = expand_inputs(args.inputs)
    if not files:
        raise UsageError(f"no input image matched {' '.join(args.inputs)}")
    # a name that matched nothing is a failed input (as an unreadable file), reported at the end
    failures: list[tuple[str, str]] = [(p, "no such file, or no image in it") for p in unmatched]
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
        if not checkpoint.is_file():
            raise UsageError(f"--checkpoint {checkpoint}: no such file")
    else:
        found = find_checkpoint("outputs")
        if found is None:
            raise UsageError(
                f"no checkpoint given and none found under {Path('outputs').resolve()}: train a model first "
                f"({QUICKSTART}), or pass --checkpoint PATH (a best.pt / last.pt of this project, or an official "
                "HigherHRNet .pth with --experiment NAME)"
            )
        checkpoint = found
    try:
        estimator = _load_estimator(args, checkpoint)
    except UsageError:
        raise
    except ValueError as e:
        flags = [f"--{k.replace('_', '-')}" for k in vars(args)]
        if any(f"{flag} " in f"{e} " or f"{flag})" in str(e) for flag in flags):
            raise UsageError(str(e)) from e  # a test setting of the command line, not the checkpoint
        raise _checkpoint_error(args, checkpoint, e) from e
    except Exception as e:  # noqa: BLE001 - any load failure is a usage error (wrong file / experiment)
        raise _checkpoint_error(args, checkpoint, e) from e
    picked = "given" if args.checkpoint else "the newest run under outputs/; --checkpoint PATH picks another"
    print(f"checkpoint {checkpoint} ({picked}): {estimator.summary}", file=sys.stderr)
    if estimator.trained_on == "synthetic":
        print(
            "warning: this model was trained on the synthetic quickstart figures, not on photos of people; "
            "expect few or no people in real images (train on COCO, or pass an official checkpoint)",
            file=sys.stderr,
        )

    from tqdm import tqdm

    from bottomup.engine.checkpoint import write_json

    out_dir = Path(args.output_dir)
    style = {
        "min_score": args.draw_min_score,
        "joint_threshold": args.joint_threshold,
        "min_side": args.min_side,
        "radius": args.radius,
        "thickness": args.thickness,
        "labels": not args.no_labels,
    }
    results: list[dict] = []
    used: set[str] = set()
    people = 0
    for path in tqdm(files, desc="infer", unit="img", disable=args.no_progress, dynamic_ncols=True):
        try:
            pred = estimator(path)
        except Exception as e:  # noqa: BLE001 - one bad input must not stop the others
            failures.append((str(path), str(e)))
            tqdm.write(f"failed: {path}: {e}", file=sys.stderr)
            continue
        kept = pred[pred.scores >= args.min_score]
        people += len(kept)
        for r in kept.to_coco(_image_id(path)):
            results.append({"file_name": path.name, **r})
        if not args.no_render:
            png = _png_path(out_dir, path, used)
            try:
                kept.save(png, **style)
            except OSError as e:
                failures.append((str(path), str(e)))
                tqdm.write(f"failed: {path}: {e}", file=sys.stderr)

    results_json = write_json(out_dir / "results.json", results)
    failed = {p for p, _ in failures}
    done = len(files) - len(failed.intersection(str(f) for f in files))
    print(
        f"{done}/{len(files)} images done, {people} people found, {len(failed)} failed; "
        f"results: {results_json}" + ("" if args.no_render else f", renderings: {out_dir}/")
    )
    for path, reason in failures:
        print(f"  failed: {path}: {reason}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

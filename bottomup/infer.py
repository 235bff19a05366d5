"""Pose estimation on your own images: ``python -m bottomup.infer IMAGES... [options]``.

Examples::

    python -m bottomup.infer photo.jpg                          # newest checkpoint under outputs/
    python -m bottomup.infer photos/ 'more/*.png' --checkpoint outputs/coco_higherhrnet_w32/2025-01-01_00-00-00/best.pt
    python -m bottomup.infer img.jpg --checkpoint pose_higher_hrnet_w32_512.pth --experiment higherhrnet_w32
    python -m bottomup.infer coco/val2017 --no-render --scales 2 1 0.5 --min-score 0.1

Inputs: image files, folders (their image files, not recursive, sorted by name) and glob patterns (quote them
so that the shell does not expand them first). Outputs in ``--output-dir`` (default ``outputs/infer``):

* ``results.json``: COCO keypoint results, one dict per detected person,
  ``{"file_name", "image_id" (when known), "category_id": 1, "keypoints": [x, y, score] * K, "score"}``, in
  original-image pixels. ``image_id`` is known when the file name is a COCO / CrowdPose id (all digits, e.g.
  ``000000000785.jpg`` -> 785), so results on a data set's images can be scored with
  :func:`bottomup.engine.evaluator.coco_keypoint_eval`.
* ``<image stem>.png`` per input (unless ``--no-render``): the image with each person's skeleton in its own
  colour and its score.

Checkpoint: ``--checkpoint`` takes this project's ``last.pt`` / ``best.pt`` (their config is inside) or an
official HigherHRNet ``.pth`` (then ``--experiment`` says which network it is). Without ``--checkpoint`` the
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
    p.add_argument("--min-score", type=float, default=0.0, help="drop people scoring below this (default 0)")
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


def _load_estimator(args: argparse.Namespace, checkpoint: Path) -> Any:
    """``PoseEstimator`` from the checkpoint, with the command-line test settings."""
    from bottomup.api import PoseEstimator
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

    if not 0.0 <= args.min_score <= 1.0:  # NaN fails too
        raise UsageError(f"--min-score must be in [0, 1] (a person score), got {args.min_score}")
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
        print(f"using checkpoint {checkpoint} (newest run under outputs/)", file=sys.stderr)
    try:
        estimator = _load_estimator(args, checkpoint)
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - any load failure is a usage error (wrong file / experiment)
        hint = ""
        if args.experiment is None and isinstance(e, ValueError) and "experiment" in str(e):
            from bottomup.build import experiments

            hint = f"\nOn the command line: --experiment NAME, one of: {', '.join(experiments())}"
        raise UsageError(f"cannot use checkpoint {checkpoint}: {e}{hint}") from e

    import cv2
    import numpy as np
    from tqdm import tqdm

    from bottomup.data import load_image
    from bottomup.engine.checkpoint import write_json
    from bottomup.engine.evaluator import people_to_results
    from bottomup.vis import draw_people

    out_dir = Path(args.output_dir)
    skeleton = list(estimator.layout.skeleton_index)
    results: list[dict] = []
    used: set[str] = set()
    people = 0
    for path in tqdm(files, desc="infer", unit="img", disable=args.no_progress, dynamic_ncols=True):
        try:
            image = load_image(path)
            pred = estimator(image)
        except Exception as e:  # noqa: BLE001 - one bad input must not stop the others
            failures.append((str(path), str(e)))
            tqdm.write(f"failed: {path}: {e}", file=sys.stderr)
            continue
        keypoints = np.asarray(pred.keypoints, dtype=np.float64)
        scores = np.asarray(pred.scores, dtype=np.float64)
        keep = scores >= args.min_score
        keypoints, scores = keypoints[keep], scores[keep]
        people += len(scores)
        for r in people_to_results(_image_id(path), keypoints, scores):
            results.append({"file_name": path.name, **r})
        if not args.no_render:
            drawn = draw_people(image, keypoints, skeleton, scores=scores)
            png = _png_path(out_dir, path, used)
            if not cv2.imwrite(str(png), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
                failures.append((str(path), f"could not write {png}"))
                tqdm.write(f"failed: {path}: could not write {png}", file=sys.stderr)

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

"""Export a checkpoint for deployment: ``python -m bottomup.export CHECKPOINT [OUTPUT] [options]``.

Examples::

    python -m bottomup.export outputs/quickstart/.../best.pt                        # -> best.onnx + best.onnx.json
    python -m bottomup.export pose_higher_hrnet_w32_512.pth w32.xml --experiment higherhrnet_w32   # OpenVINO IR
    python -m bottomup.export --weights higherhrnet_w32_coco_512 w32.onnx     # a published model (bottomup.zoo)
    python -m bottomup.export best.pt best_int8.onnx --int8 --calib coco/val2017    # INT8 for ONNX Runtime (QDQ)
    python -m bottomup.export best.pt fast_int8.onnx --int8 --int8-ops all --calib coco/val2017   # faster, less exact
    python -m bottomup.export best.pt best_int8.xml --int8 --calib coco/val2017     # INT8 (NNCF), OpenVINO IR

Writes the model file -- ONNX (``.onnx``) or OpenVINO IR (``.xml`` + ``.bin``) -- holding the network and the
test-time graph (flip test, stage / flip averaging, projection, heatmap NMS, top-k candidates with their tags;
``bottomup.deploy.graph``), and its JSON beside it (the model file's name + ``.json``: ``best.onnx.json``,
``w32.xml.json``) with the keypoint layout, the input size rule, normalisation, strides and test settings, the
model file's name and SHA-256 checksums, which the runtime checks. The files are written into a temporary folder
beside the output and moved into place at the end: a failed export leaves the files that were there. ``python -m bottomup.infer IMAGES --checkpoint best.onnx`` or
``bottomup.deploy.runtime.DeployedPoseEstimator`` run it (ONNX Runtime / OpenVINO, no torch needed).

Checkpoint: this project's ``last.pt`` / ``best.pt`` (config inside) or an official HigherHRNet ``.pth``
(``--experiment`` names the network); or ``--weights NAME``, a published model (``python -m bottomup.zoo``), its
file downloaded once into the cache and verified. Test settings come from the checkpoint's config; ``--input-size``,
``--no-flip`` and the grouping flags replace them. The exported graph runs one scale.

INT8 calibration on fewer than 32 images (``bottomup.deploy.export.MIN_CALIBRATION_IMAGES``) gets a warning.

Exit status: 0 written; 2 usage error (bad checkpoint, option or calibration folder, an output folder that cannot
be written; nothing is written).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bottomup.export",
        description="Export a checkpoint with its test-time graph to ONNX or OpenVINO IR (optionally INT8).",
        epilog="Exit status: 0 written, 2 usage error.",
    )
    p.add_argument(
        "checkpoint",
        nargs="?",
        help="this project's last.pt / best.pt, or an official HigherHRNet .pth (left out with --weights)",
    )
    p.add_argument(
        "output",
        nargs="?",
        help="model file to write: *.onnx or *.xml (OpenVINO IR); default: the checkpoint's name with the "
        "format's suffix, beside it (with --weights: NAME.onnx here)",
    )
    p.add_argument("--experiment", help="conf/experiment name of the network (required for an official .pth)")
    p.add_argument(
        "--weights",
        metavar="NAME",
        help="export a published model by name instead of CHECKPOINT (python -m bottomup.zoo lists them); "
        "downloaded once into $BOTTOMUP_CACHE/weights and verified",
    )
    p.add_argument("--format", choices=["onnx", "openvino"], help="default: from the output suffix, else onnx")
    p.add_argument(
        "--exporter",
        choices=["dynamo", "torchscript"],
        default="dynamo",
        help="torch.onnx front end: dynamo (torch.export, opset 18; default) or torchscript (opset 17, faster)",
    )
    p.add_argument("--input-size", type=int, help="short side of the network input (default: the config's)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help="flip test in the graph")
    p.add_argument(
        "--udp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="UDP test time (test.udp: resize, aggregation, decode, mapping back; default: the config's)",
    )
    p.add_argument("--detection-threshold", type=float, help="minimum heatmap peak to start a joint")
    p.add_argument("--tag-threshold", type=float, help="maximum tag distance to join a person")
    p.add_argument("--max-people", type=int, help="candidates per joint kept by the graph's top-k")
    p.add_argument(
        "--int8",
        action="store_true",
        help="post-training static INT8 quantisation: ONNX Runtime quantize_static for .onnx (recommended), NNCF "
        "for an OpenVINO .xml (lost most AP on official-init models; see README)",
    )
    p.add_argument("--calib", nargs="+", help="calibration images for --int8: files, folders or glob patterns")
    p.add_argument("--calib-count", type=int, default=100, help="use at most this many calibration images")
    p.add_argument(
        "--int8-ops",
        choices=["conv", "all"],
        help="ONNX Runtime INT8: quantise the convolutions only (default, accurate) or also the additions, ReLU and "
        "upsampling (~15%% faster on W32, lost more AP; see README)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    problem = _source_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    checkpoint = Path(args.checkpoint or f"{args.weights}.pt")  # with --weights: the default output's stem
    fmt = args.format
    output = Path(args.output) if args.output else None
    if fmt is None:
        if output is not None and output.suffix in (".onnx", ".xml"):
            fmt = "openvino" if output.suffix == ".xml" else "onnx"
        else:
            fmt = "onnx"
    if output is None:
        output = checkpoint.with_suffix(".xml" if fmt == "openvino" else ".onnx")
    problem = _unwritable(output.parent)
    if problem:
        print(f"error: cannot write {output.name} into {output.parent}: {problem}; choose another OUTPUT path",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.int8_ops and not (args.int8 and fmt == "onnx"):
        print("error: --int8-ops chooses what ONNX Runtime INT8 quantises: give it with --int8 and a .onnx output",
              file=sys.stderr)  # fmt: skip
        return 2
    calibration: list[Path] = []
    if args.int8:
        from bottomup.data.io import expand_inputs

        if not args.calib:
            print("error: --int8 needs --calib IMAGES (a folder of real images, e.g. coco/val2017)", file=sys.stderr)
            return 2
        calibration, _ = expand_inputs(args.calib)
        if not calibration:
            print(f"error: --calib {' '.join(args.calib)}: no image found", file=sys.stderr)
            return 2
        calibration = calibration[: args.calib_count]
    from bottomup.api import PoseEstimator
    from bottomup.deploy.export import export_model

    overrides = {"scales": [1.0]}
    for key in ("input_size", "detection_threshold", "tag_threshold", "max_people"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.flip is not None:
        overrides["flip_test"] = bool(args.flip)
    if args.udp is not None:
        overrides["udp"] = bool(args.udp)
    try:
        if args.weights:
            estimator = PoseEstimator.from_pretrained(args.weights, device="cpu", **overrides)
        else:
            estimator = PoseEstimator.from_checkpoint(checkpoint, experiment=args.experiment, device="cpu", **overrides)
        written = export_model(
            estimator,
            output,
            format=fmt,
            exporter=args.exporter,
            int8=args.int8,
            calibration=calibration,
            int8_ops=args.int8_ops,
            summary=estimator.summary,
            trained_on=estimator.trained_on,
            source=args.weights or str(checkpoint),
        )
    except (ValueError, OSError, RuntimeError, ImportError) as e:
        if _in_folder(e, output.parent):  # read-only, full disk, ...: the files there were not replaced
            print(f"error: cannot write {output.name} into {output.parent}: {e.strerror or e}; the files there are "
                  "unchanged", file=sys.stderr)  # fmt: skip
        else:
            print(f"error: {args.weights or checkpoint}: {e}", file=sys.stderr)
        return 2
    print(" ".join(str(p) for p in written.values()))
    return 0


def _source_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with CHECKPOINT / ``--weights`` (one of them, an existing file), or ``None``. With
    ``--weights`` a single positional argument is the OUTPUT (``--weights NAME w32.onnx``)."""
    if args.weights:
        if args.checkpoint is not None and args.output is not None:
            return f"--weights {args.weights} takes the place of CHECKPOINT: give OUTPUT only"
        if args.experiment:
            return f"--weights {args.weights}: --experiment not with it (the name says which network)"
        args.output, args.checkpoint = args.output or args.checkpoint, None
        return None
    if args.checkpoint is None:
        return "give CHECKPOINT (a file) or --weights NAME (a published model: python -m bottomup.zoo lists them)"
    checkpoint = Path(args.checkpoint)
    if checkpoint.is_dir():
        from bottomup.engine.checkpoint import folder_given_message

        return folder_given_message(checkpoint)
    if not checkpoint.is_file():
        return f"checkpoint {checkpoint}: no such file"
    return None


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (or, when it does not exist yet, in its nearest existing parent,
    where it will be made), or ``None``: a probe file is created and removed there, so that a read-only folder
    fails before the checkpoint is loaded and the graph exported."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return None


def _in_folder(error: BaseException, folder: Path) -> bool:
    """An ``OSError`` (not a file-format ``ValueError``) about a path in ``folder``: the output could not be
    written."""
    name = getattr(error, "filename", None)
    if not isinstance(error, OSError) or isinstance(error, ValueError) or name is None:
        return False
    return Path(os.fspath(name)).resolve().is_relative_to(folder.resolve())


if __name__ == "__main__":
    sys.exit(main())

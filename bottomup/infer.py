"""Pose estimation on your own images: ``python -m bottomup.infer IMAGES... [options]``.

Examples::

    python -m bottomup.infer photo.jpg                          # newest checkpoint under outputs/
    python -m bottomup.infer photos/ 'more/*.png' --checkpoint outputs/coco_higherhrnet_w32/2025-01-01_00-00-00/best.pt
    python -m bottomup.infer img.jpg --checkpoint pose_higher_hrnet_w32_512.pth --experiment higherhrnet_w32
    python -m bottomup.infer img.jpg --weights higherhrnet_w32_coco_512   # a published model (python -m bottomup.zoo)
    python -m bottomup.infer coco/val2017 --no-render --scales 2 1 0.5 --min-score 0.1
    python -m bottomup.infer clip.mp4 --max-age 30 --smooth       # video: tracked people, clip.jsonl + clip.mp4
    python -m bottomup.infer 0 --max-frames 300                   # camera 0 (Ctrl-C stops, keeping the outputs)
    python -m bottomup.infer rtsp://host/stream --stride 2 --no-render
    python -m bottomup.infer frames/ --sequence --fps 25          # an image folder as the frames of a video
    python -m bottomup.infer photo.jpg --checkpoint best.onnx --backend onnxruntime   # exported (bottomup.export)

Inputs: image files, folders (their image files, not recursive, sorted by name) and glob patterns (quote them
so that the shell does not expand them first); videos: video files (``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ...,
also matched by globs), a camera index (``0``), a stream URL OpenCV opens (``rtsp://``, ``http://``, ...) and, with
``--sequence``, image folders read as the frames of a video. Outputs in ``--output-dir`` (default ``outputs/infer``):

* ``results.json``: COCO keypoint results, one dict per detected person,
  ``{"file_name", "image_id" (when known), "category_id" (the model's data set's, ``data.category_id``), "keypoints": [x, y, score] * K, "score", "bbox"}``
  in original-image pixels (``bbox``: ``[x, y, w, h]`` around the detected joints); ``--min-score`` drops people.
  ``file_name`` is the image's path relative to the input it came from (``/``-separated), so that files of one name
  in different folders stay apart: for a folder input relative to the folder's parent (``photos/x.jpg``; ``a/x.jpg``
  and ``b/x.jpg`` for the folders ``a`` and ``b``), for a glob relative to the parent of its leading folder
  (``'more/*.png'`` -> ``more/y.png``), for a file named directly its name (``x.jpg``). ``image_id`` is known when
  the file name is a COCO / CrowdPose id (all digits, e.g. ``000000000785.jpg`` -> 785), so results on a data set's
  images can be scored with :func:`bottomup.engine.evaluator.coco_keypoint_eval`. The file is written atomically
  after the first image, again after an image once 10 s have passed since, and at the end however the run ends.
* ``<image stem>.png`` per input (unless ``--no-render``; ``<stem>_2.png``, ... for a second file of one stem): the
  image with each person's skeleton in its own colour and its score; people below ``--draw-min-score`` (0.1) and
  joints at or below ``--joint-threshold`` (0.1) are not drawn, and images smaller than ``--min-side`` (640 px) are
  upscaled first.

* per video ``<name>.jsonl`` (``<name>``: the file's stem, ``camera0``, the URL's or folder's last part): one
  line per processed frame, written as the frame is done (streaming: memory stays flat),
  ``{"frame": i, "time_s": t, "people": [{"track_id", "keypoints": [x, y, score] * K, "score"}]}`` in frame pixels
  (``track_id`` null with ``--no-track``); people below ``--min-score`` are left out before tracking.
  ``--stride n`` processes every n-th frame, ``--max-frames`` stops after that many.
* per video (unless ``--no-render``) ``<name>.mp4``: the frames at their size and rate (divided by ``--stride``)
  with each track in its own colour and labelled ``#id``; it holds the same frames as the jsonl. A video has one
  frame size: a ``--sequence`` image of another size than the first fails that video (the message names both
  files and sizes; the frames before it are kept). A video file that ends before the frame count its container
  reports (cut short or damaged) is processed to where it breaks, with a warning naming the file and both counts.

Nothing is overwritten: when ``--output-dir`` holds an earlier run's results (``results.json``, ``*.jsonl``, or a
PNG / MP4 of a name this run writes) or another run is writing into it, the run writes into a new numbered folder
beside it (``outputs/infer`` -> ``outputs/infer2``, ``outputs/infer3``, ...; each made with ``mkdir`` that fails
when it exists, so that concurrent runs never share one; while a run writes, a hidden ``.bottomup-infer.lock``
marks its folder) and says so in one line on stderr. ``--exist-ok`` writes
into ``--output-dir`` whatever it holds (files of the same names are overwritten). A folder that cannot be made
or written into is a usage error before any work.

Stopping: SIGINT (Ctrl-C), SIGTERM and SIGHUP end the run after the image or frame at hand (a second signal ends
it at once); everything written is kept: ``results.json`` lists the images done, a video's jsonl holds every
finished frame and its mp4 is finalised with the same frames. One line on stderr says what was kept; the exit
status is 128 + the signal's number.

Tracking (``--track``, the default for videos): people are matched to the tracks of earlier frames by OKS with the
data set's sigmas (Hungarian method; box IoU when no joint is shared), ByteTrack-style: duplicates of a person are
dropped, people scoring at least ``--track-high-score`` are matched first and start new tracks (given an id after
``--min-hits`` frames), people between ``--track-low-score`` and it only continue tracks, lower ones are not tracked
(only tracked people are written); a match needs an OKS of at least ``--track-min-similarity``, and a person whose
OKS with a higher-scoring one reaches ``--track-nms-oks`` is a duplicate; a step further than ``--track-max-jump``
person sizes from a track's predicted one (a scene cut) does not become its velocity, and a joint further than
``--track-max-joint-shift`` track sizes from where the track predicted it (put on a neighbour by grouping) does not
replace the track's joint; a track missed for up to
``--max-age`` processed frames takes its person back;
``--smooth`` applies a One Euro filter to each track's keypoints (``bottomup.engine.tracking``).

Checkpoint: ``--checkpoint`` takes this project's ``last.pt`` / ``best.pt`` (their config is inside) or an
official HigherHRNet ``.pth`` (then ``--experiment`` says which network it is), or a model exported by
``python -m bottomup.export`` (``.onnx`` / OpenVINO ``.xml``, its JSON beside it), which ``--backend onnxruntime`` /
``openvino`` runs (default by the suffix; the test settings are the exported ones). Without ``--checkpoint`` the
newest run under ``./outputs/`` is used: the run folder whose ``best.pt`` / ``last.pt`` was written last, and
in it ``best.pt`` (best validation AP) when it exists, else ``last.pt``. ``--weights NAME`` takes a published
model instead (``python -m bottomup.zoo`` lists them): its file is downloaded once into the cache
(``$BOTTOMUP_CACHE/weights``, default ``~/.cache/bottomup/weights``) and verified; ``BOTTOMUP_OFFLINE=1`` never
downloads, and when the file cannot be had the message names its URL, checksum and the path to put it in.

Exit status: 0 all inputs processed; 1 some input failed (unreadable image or video; reported and skipped); 2 usage
error (no input matched, no checkpoint, bad option or checkpoint, an ``--output-dir`` that cannot be written);
130 / 143 / 129 stopped by SIGINT (Ctrl-C) / SIGTERM / SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
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
        epilog="Exit status: 0 all inputs done, 1 some input failed, 2 usage error (also an --output-dir that "
        "cannot be written), 130 / 143 / 129 stopped by SIGINT (Ctrl-C) / SIGTERM / SIGHUP after the image or frame "
        "at hand, keeping everything written (results.json of the images done, the .jsonl lines and a playable "
        ".mp4 of the frames done).",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        help="image files, folders or glob patterns; video files, camera indices (0) or stream URLs (rtsp://...)",
    )
    p.add_argument(
        "--checkpoint",
        help="this project's last.pt / best.pt, or an official HigherHRNet / MMPose 0.x .pth (needs --experiment); "
        "default: the newest run under ./outputs (best.pt, else last.pt)",
    )
    p.add_argument(
        "--experiment",
        help="conf/experiment name the network was built with (e.g. higherhrnet_w32); required for official .pth",
    )
    p.add_argument(
        "--weights",
        metavar="NAME",
        help="a published model by name instead of --checkpoint (python -m bottomup.zoo lists them, e.g. "
        "higherhrnet_w32_coco_512); downloaded once into $BOTTOMUP_CACHE/weights (default ~/.cache/bottomup), "
        "checksum verified; BOTTOMUP_OFFLINE=1 never downloads, BOTTOMUP_WEIGHTS_MIRROR replaces the base URL",
    )
    p.add_argument(
        "--output-dir",
        default="outputs/infer",
        help="where to write results.json, PNGs, .jsonl and .mp4 (default %(default)s); when it holds an earlier "
        "run's results (results.json, *.jsonl, or a file of a name this run writes), a new numbered folder beside "
        "it is used instead (outputs/infer2, outputs/infer3, ...) and named on stderr",
    )
    p.add_argument(
        "--exist-ok",
        action="store_true",
        help="write into --output-dir even when it holds results (files of the same names are overwritten)",
    )
    p.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, default=None, help="flip test (default: the config's)"
    )
    p.add_argument(
        "--udp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="UDP test time (test.udp, for models trained with data.udp; default: the config's)",
    )
    p.add_argument("--scales", type=float, nargs="+", help="test scales, e.g. 2 1 0.5 (default: the config's)")
    p.add_argument("--detection-threshold", type=float, help="minimum heatmap peak to start a joint")
    p.add_argument("--tag-threshold", type=float, help="maximum tag distance to join a person")
    p.add_argument(
        "--min-score", type=float, default=0.0, help="leave people scoring below this out of results.json (default 0)"
    )
    _add_picture_options(p.add_argument_group("pictures"))
    p.add_argument(
        "--backend",
        choices=["torch", "onnxruntime", "openvino"],
        help="torch runs a checkpoint; onnxruntime / openvino run a model exported by python -m bottomup.export "
        "(--checkpoint model.onnx / model.xml; default: by its suffix)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="network precision (default auto: a short probe, cached per machine, picks the fastest correct path -- "
        "precision, --channels-last and --fold-bn together -- and keeps plain fp32 unless another is >10%% faster; "
        "fp32: the exact official arithmetic)",
    )
    p.add_argument("--channels-last", action="store_true", help="NHWC network input (faster with oneDNN / cuDNN)")
    p.add_argument(
        "--fold-bn",
        action="store_true",
        help="fold BatchNorm into the convs and cast the weights to --precision (fastest CPU path with bf16)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the network (the first image compiles)")
    p.add_argument("--no-render", action="store_true", help="write results.json / .jsonl only, no PNGs / MP4s")
    _add_video_options(p.add_argument_group("videos, cameras and streams"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _add_picture_options(draw: argparse._ArgumentGroup) -> None:
    """The drawing options of the PNGs and MP4s."""
    from bottomup.vis.draw import PLOT_DEFAULTS  # cv2 only: --help stays torch-free

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


def _add_video_options(video: argparse._ArgumentGroup) -> None:
    """The options of videos, cameras, streams and --sequence folders."""
    from bottomup.engine.tracking import TrackerSettings

    tracker_defaults = TrackerSettings()
    video.add_argument("--sequence", action="store_true", help="read image folders as the frames of one video each")
    video.add_argument("--fps", type=float, default=30.0, help="frame rate of --sequence folders (default %(default)s)")
    video.add_argument("--stride", type=int, default=1, help="process every n-th frame (default %(default)s)")
    video.add_argument("--max-frames", type=int, help="stop after this many processed frames per video")
    video.add_argument(
        "--track",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give people track ids across frames (default: on)",
    )
    video.add_argument(
        "--max-age",
        type=int,
        default=tracker_defaults.max_age,
        help="processed frames a lost track survives and can take its person back (default %(default)s)",
    )
    video.add_argument("--smooth", action="store_true", help="One Euro filter on each track's keypoints")
    video.add_argument(
        "--track-high-score",
        type=float,
        default=None,
        help="person score from which a person is matched first and may start a track (default "
        f"{tracker_defaults.high_score})",
    )
    video.add_argument(
        "--track-low-score",
        type=float,
        default=None,
        help="person score below which a person is not tracked; between the two it only continues a track "
        f"(default {tracker_defaults.low_score})",
    )
    video.add_argument(
        "--min-hits",
        type=int,
        default=None,
        help=f"frames a new track needs before it gets its id (default {tracker_defaults.min_hits})",
    )
    video.add_argument(
        "--track-min-similarity",
        type=float,
        default=None,
        help="least OKS (box IoU without a common joint) of a person and a track's predicted pose for a match "
        f"(default {tracker_defaults.min_similarity})",
    )
    video.add_argument(
        "--track-nms-oks",
        type=float,
        default=None,
        help="OKS from which a lower-scoring person is a duplicate of a higher-scoring one and is not tracked (1: "
        f"off; default {tracker_defaults.nms_oks})",
    )
    video.add_argument(
        "--track-max-jump",
        type=float,
        default=None,
        help="a step this many person sizes away from a track's predicted one is a jump (a scene cut), not motion: "
        f"the track keeps its velocity (inf: off; default {tracker_defaults.max_jump})",
    )
    video.add_argument(
        "--track-max-joint-shift",
        type=float,
        default=None,
        help="a matched person's joint this many of the track's person sizes from where the track predicted it "
        "(grouping put it on a neighbour) does not replace the track's joint (inf: off; default "
        f"{tracker_defaults.max_joint_shift})",
    )


def _load_exported(args: argparse.Namespace, checkpoint: Path) -> Any:
    """``PoseEstimator.from_exported``: an exported model on ONNX Runtime / OpenVINO (``--backend``)."""
    from bottomup.api import PoseEstimator

    fixed = [
        flag
        for flag, given in (
            ("--flip / --no-flip", args.flip is not None),
            ("--udp / --no-udp", args.udp is not None),
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
    backend = None if args.backend in (None, "torch") else args.backend
    return PoseEstimator.from_exported(checkpoint, backend=backend)


def _load_estimator(args: argparse.Namespace, checkpoint: Path) -> Any:
    """``PoseEstimator`` from the checkpoint (or exported model) with its own test settings; the command line's
    come after (:func:`_with_options`), so that an error in either is told apart by where it happened."""
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
    return PoseEstimator.from_checkpoint(checkpoint, experiment=args.experiment, device=device)


def _with_options(args: argparse.Namespace, estimator: Any) -> Any:
    """``estimator`` with the command line's test settings (``--flip``, ``--scales``, thresholds, precision, ...).

    Raises:
        UsageError: a value out of range (the message names the setting), or a setting an exported model holds.
    """
    changes: dict[str, Any] = {}
    if args.flip is not None:
        changes["flip_test"] = bool(args.flip)
    if args.udp is not None:
        changes["udp"] = bool(args.udp)
    if args.scales:
        changes["scales"] = [float(s) for s in args.scales]
    if args.detection_threshold is not None:
        changes["detection_threshold"] = float(args.detection_threshold)
    if args.tag_threshold is not None:
        changes["tag_threshold"] = float(args.tag_threshold)
    if args.precision is not None:
        changes["precision"] = args.precision
    elif getattr(estimator.backend, "name", "") == "torch":  # the default: the fastest path measured on this machine
        changes["precision"] = "auto"
    for flag in ("channels_last", "fold_bn", "compile"):
        if getattr(args, flag):
            changes[flag] = True
    try:
        return estimator.with_settings(**changes) if changes else estimator
    except ValueError as e:
        raise UsageError(str(e)) from e


def _checkpoint_error(args: argparse.Namespace, checkpoint: Path, e: Exception) -> UsageError:
    """A load failure as a usage error naming the file (and the experiments, when one is needed)."""
    from bottomup.build import ExperimentRequiredError, experiments

    hint = ""
    if args.experiment is None and isinstance(e, ExperimentRequiredError):
        hint = f"\nOn the command line: --experiment NAME, one of: {', '.join(experiments())}"
    from bottomup.engine.checkpoint import CheckpointError

    if isinstance(e, CheckpointError):  # its message names the file already
        return UsageError(f"{e}{hint}")
    return UsageError(f"cannot use checkpoint {checkpoint}: {e}{hint}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (see the module docstring)."""
    args = _parser().parse_args(argv)
    from bottomup.engine.writers import StopSignals

    with StopSignals() as stop:
        try:
            return _run(args, stop)
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # a stop signal before any input was done (loading the model, ...)
            _say(f"interrupted by {stop.name or 'SIGINT'} before any input was done; nothing was written")
            return stop.exit_status


def _say(line: str) -> None:
    """One line on stderr (a closed terminal, after SIGHUP, is not an error)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def _check_options(args: argparse.Namespace) -> None:
    """Ranges of the numeric options (a usage error names the option)."""
    for flag in ("min_score", "draw_min_score", "joint_threshold"):
        if not 0.0 <= getattr(args, flag) <= 1.0:  # NaN fails too
            raise UsageError(f"--{flag.replace('_', '-')} must be in [0, 1] (a score), got {getattr(args, flag)}")
    for flag in ("min_side", "radius", "thickness"):
        if getattr(args, flag) is not None and not 1 <= getattr(args, flag) <= 8192:
            raise UsageError(f"--{flag.replace('_', '-')} must be in [1, 8192] pixels, got {getattr(args, flag)}")
    for flag, least in (("stride", 1), ("max_frames", 1), ("max_age", 0), ("min_hits", 1)):
        if getattr(args, flag) is not None and getattr(args, flag) < least:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= {least}, got {getattr(args, flag)}")
    for flag in ("track_high_score", "track_low_score"):
        if getattr(args, flag) is not None and not 0.0 <= getattr(args, flag) <= 1.0:
            raise UsageError(f"--{flag.replace('_', '-')} must be in [0, 1] (a score), got {getattr(args, flag)}")
    if not args.fps > 0:
        raise UsageError(f"--fps must be > 0 frames per second, got {args.fps}")


def _checkpoint_path(args: argparse.Namespace) -> Path:
    """``--checkpoint``, or the newest run's under ``./outputs``."""
    from bottomup.engine.checkpoint import find_checkpoint, folder_given_message

    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
        if checkpoint.is_dir():
            raise UsageError(folder_given_message(checkpoint, f"--checkpoint {checkpoint}"))
        if not checkpoint.is_file():
            raise UsageError(f"--checkpoint {checkpoint}: no such file")
        return checkpoint
    found = find_checkpoint("outputs")
    if found is None:
        raise UsageError(
            f"no checkpoint given and none found under {Path('outputs').resolve()}: train a model first "
            f"({QUICKSTART}), or pass --checkpoint PATH (a best.pt / last.pt of this project, or an official "
            "HigherHRNet .pth with --experiment NAME)"
        )
    return found


def _pretrained(args: argparse.Namespace) -> Any:
    """``PoseEstimator.from_pretrained(--weights)``: a published model by name (downloaded into the cache once)."""
    clash = [flag for flag, given in (("--checkpoint", args.checkpoint), ("--experiment", args.experiment)) if given]
    if clash or args.backend not in (None, "torch"):
        what = ", ".join(clash) or f"--backend {args.backend}"
        raise UsageError(f"--weights {args.weights}: {what} not with it (the name says which file and network)")
    from bottomup.api import PoseEstimator
    from bottomup.engine.distributed import resolve_device

    try:
        device = resolve_device(args.device, key="--device")
        return PoseEstimator.from_pretrained(args.weights, device=device, progress=not args.no_progress)
    except Exception as e:  # noqa: BLE001 - unknown name, no download, weights that do not load: usage errors
        raise UsageError(f"--weights {args.weights}: {e}") from e


def _estimator(args: argparse.Namespace) -> Any:
    """The ``PoseEstimator`` with the command line's settings; says on stderr what the model is."""
    if args.weights:
        estimator = _with_options(args, _pretrained(args))
        print(f"weights {args.weights}: {estimator.summary}", file=sys.stderr)
        _say_fast_path(estimator)
        return estimator
    checkpoint = _checkpoint_path(args)
    try:
        estimator = _load_estimator(args, checkpoint)
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - any load failure is a usage error (wrong file / experiment)
        raise _checkpoint_error(args, checkpoint, e) from e
    estimator = _with_options(args, estimator)
    picked = "given" if args.checkpoint else "the newest run under outputs/; --checkpoint PATH picks another"
    print(f"checkpoint {checkpoint} ({picked}): {estimator.summary}", file=sys.stderr)
    _say_fast_path(estimator)
    if estimator.trained_on == "synthetic":
        print(
            "warning: this model was trained on the synthetic quickstart figures, not on photos of people; "
            "expect few or no people in real images (train on COCO, or pass an official checkpoint)",
            file=sys.stderr,
        )
    return estimator


def _say_fast_path(estimator: Any) -> None:
    """One line on stderr: the path ``--precision auto`` picked and what it measured."""
    record = getattr(estimator, "fast_path", None)
    if record:
        from bottomup.models.fast import describe_fast_path

        print(f"precision auto on {estimator.device}: {describe_fast_path(record)}", file=sys.stderr)


def _plan(
    videos: Sequence[str], files: Sequence[tuple[Path, str]], args: argparse.Namespace
) -> tuple[list[str], list[str | None], set[str]]:
    """The output names of the run, before any work: ``(video name per video, PNG name per image (None without
    rendering), every file name it would write)``."""
    from bottomup.data.video import source_name
    from bottomup.engine.writers import OutputNames

    names = OutputNames()
    bases = [names.reserve(source_name(item, args.sequence), (".jsonl", ".mp4")) for item in videos]
    pngs: list[str | None] = [None] * len(files)
    if not args.no_render:
        pngs = [names.reserve(path.stem, (".png",)) + ".png" for path, _ in files]
    written = {n for n in names.names if not n.endswith(".mp4")} if args.no_render else set(names.names)
    return bases, pngs, written


def _run(args: argparse.Namespace, stop: Any) -> int:
    from bottomup.data.io import expand_labelled_inputs
    from bottomup.engine.writers import OutputDirError, claim_output_dir

    _check_options(args)
    videos, image_inputs = _split_inputs(args.inputs, args.sequence)
    files, unmatched = expand_labelled_inputs(image_inputs) if image_inputs else ([], [])
    if not files and not videos:
        raise UsageError(f"no input image matched {' '.join(args.inputs)} (nor is any a video, camera or stream)")
    # a name that matched nothing is a failed input (as an unreadable file), reported at the end
    failures: list[tuple[str, str]] = [(p, "no such file, or no image in it") for p in unmatched]
    bases, pngs, written = _plan(videos, files, args)
    with contextlib.ExitStack() as held:
        try:  # before any work: a folder that cannot be written is a usage error
            folder = held.enter_context(claim_output_dir(args.output_dir, written, exist_ok=args.exist_ok))
        except OutputDirError as e:
            raise UsageError(f"--output-dir: {e}; give a folder you can write to") from e
        if folder.reason:
            print(
                f"{folder.given} {folder.reason}: writing into {folder.path} instead "
                f"(--exist-ok writes into {folder.given}, overwriting)",
                file=sys.stderr,
            )
        estimator = _estimator(args)
        style = {
            "min_score": args.draw_min_score,
            "joint_threshold": args.joint_threshold,
            "min_side": args.min_side,
            "radius": args.radius,
            "thickness": args.thickness,
            "labels": not args.no_labels,
        }
        status = None
        try:
            if videos:
                videos_named = list(zip(videos, bases, strict=True))
                status = _run_videos(estimator, videos_named, args, folder.path, style, failures, stop)
            if files and status is None:
                files_named = list(zip(files, pngs, strict=True))
                status = _run_images(estimator, files_named, args, folder.path, style, failures, stop)
        except KeyboardInterrupt:  # a second signal between two inputs: the files of those done are whole
            _say(f"interrupted by {stop.name or 'SIGINT'}: stopped at once; what was written is kept in {folder.path}/")
            return stop.exit_status
        for path, reason in failures:
            print(f"  failed: {path}: {reason}")
        return status if status is not None else (1 if failures else 0)


def _run_images(
    estimator: Any,
    files: Sequence[tuple[tuple[Path, str], str | None]],
    args: argparse.Namespace,
    out_dir: Path,
    style: dict[str, Any],
    failures: list[tuple[str, str]],
    stop: Any,
) -> int | None:
    """Each image through ``estimator`` into ``results.json`` and its PNG (``bottomup.engine.writers.ImageResults``;
    ``results.json`` is written on every way out); a failing image is added to ``failures``. Returns the exit
    status when a stop signal ended the run (``128 + signum``), else ``None``."""
    from tqdm import tqdm

    from bottomup.engine.writers import ImageResults

    images = ImageResults(out_dir, min_score=args.min_score, style=None if args.no_render else style)
    bar = tqdm(total=len(files), desc="infer", unit="img", disable=args.no_progress, dynamic_ncols=True)
    done, interrupted = 0, False
    try:
        with stop.deferred():
            for (path, label), png in files:
                if stop:
                    break
                try:
                    images.add(path, estimator(path), file_name=label, png=None if png is None else out_dir / png)
                    done += 1
                except Exception as e:  # noqa: BLE001 - one bad input must not stop the others
                    failures.append((str(path), str(e)))
                    tqdm.write(f"failed: {path}: {e}", file=sys.stderr)
                bar.update()
    except KeyboardInterrupt:  # a second stop signal: results.json is still written below
        interrupted = True
    finally:
        bar.close()
        results_json = images.close()
    failed = len({p for p, _ in failures} & {str(p) for (p, _), _ in files})
    print(
        f"{done}/{len(files)} images done, {images.people} people found, {failed} failed; "
        f"results: {results_json}" + ("" if args.no_render else f", renderings: {out_dir}/")
    )
    if not (stop or interrupted):
        return None
    stopped = f"stopped after {done + failed} of {len(files)} images"
    _say(f"interrupted by {stop.name or 'SIGINT'}: {stopped}; {results_json} holds the results of those done")
    return stop.exit_status


def _split_inputs(inputs: Sequence[str], sequence: bool) -> tuple[list[str], list[str]]:
    """``(videos, image inputs)``: camera indices, URLs, video files (named, or matched by a glob) and, with
    ``sequence``, folders are videos; the rest are image inputs for ``expand_inputs``."""
    import glob

    from bottomup.data.video import VIDEO_EXTENSIONS, is_video_source

    videos: list[str] = []
    images: list[str] = []
    for item in inputs:
        if is_video_source(item, sequence):
            videos.append(item)
            continue
        if glob.has_magic(item) and not Path(item).exists():
            found = sorted(p for p in glob.glob(item, recursive=True) if Path(p).suffix.lower() in VIDEO_EXTENSIONS)
            videos.extend(p for p in found if Path(p).is_file())
            if found and not any(Path(p).suffix.lower() not in VIDEO_EXTENSIONS for p in glob.glob(item)):
                continue  # only videos matched
        images.append(item)
    return videos, images


#: ``TrackerSettings`` key -> the command-line option that sets it.
_TRACKER_FLAGS: dict[str, str] = {
    "max_age": "max_age",
    "smoothing": "smooth",
    "high_score": "track_high_score",
    "low_score": "track_low_score",
    "min_hits": "min_hits",
    "min_similarity": "track_min_similarity",
    "nms_oks": "track_nms_oks",
    "max_jump": "track_max_jump",
    "max_joint_shift": "track_max_joint_shift",
}


def _tracker_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``bottomup.engine.tracking.TrackerSettings`` keys the command line sets, checked by ``TrackerSettings``
    (its message names the options, not the keys)."""
    import re

    from bottomup.engine.tracking import TrackerSettings

    out = {key: getattr(args, flag) for key, flag in _TRACKER_FLAGS.items() if getattr(args, flag) is not None}
    try:
        TrackerSettings().replace(**out)
    except ValueError as e:
        keys = re.compile(r"\b(" + "|".join(_TRACKER_FLAGS) + r")\b")
        message = keys.sub(lambda m: "--" + _TRACKER_FLAGS[m.group(1)].replace("_", "-"), str(e))
        raise UsageError(f"tracking options: {message}") from e
    return out


def _run_videos(
    estimator: Any,
    videos: Sequence[tuple[str, str]],
    args: argparse.Namespace,
    out_dir: Path,
    style: dict[str, Any],
    failures: list[tuple[str, str]],
    stop: Any,
) -> int | None:
    """Each ``(video, output name)`` through ``estimator.track``, writing ``<name>.jsonl`` (+ ``<name>.mp4``,
    ``bottomup.engine.writers.VideoOutput``); a source that fails is added to ``failures``; a file cut short warns
    on stderr. Returns the exit status when a stop signal ended the run (``128 + signum``), else ``None``."""
    import warnings

    from tqdm import tqdm

    from bottomup.data.video import TruncatedVideoWarning, VideoReadError, open_source
    from bottomup.engine.writers import VideoOutput

    def one_line(message: Any, category: Any, *rest: Any, **kw: Any) -> None:
        if issubclass(category, TruncatedVideoWarning):
            tqdm.write(f"warning: {message}", file=sys.stderr)
        else:
            shown(message, category, *rest, **kw)

    tracker_settings = _tracker_settings(args)
    frame_style = {**style, "min_side": 0}  # the rendered video has the frames' size
    with warnings.catch_warnings(), stop.deferred():
        shown, warnings.showwarning = warnings.showwarning, one_line
        warnings.simplefilter("always", TruncatedVideoWarning)
        for item, base in videos:
            if stop:
                break
            try:
                source = open_source(
                    item, sequence=args.sequence, fps=args.fps, stride=args.stride, max_frames=args.max_frames
                )
            except VideoReadError as e:
                failures.append((item, str(e)))
                print(f"failed: {item}: {e}", file=sys.stderr)
                continue
            out = VideoOutput(
                out_dir / f"{base}.jsonl", None if args.no_render else out_dir / f"{base}.mp4",
                fps=source.fps / source.stride, size=source.size, style=frame_style,
            )  # fmt: skip
            bar = tqdm(total=source.total, desc=source.name, unit="frame", disable=args.no_progress, dynamic_ncols=True)
            try:
                with source:
                    tracked = estimator.track(source, tracking=args.track, min_score=args.min_score, **tracker_settings)
                    out.write(tracked, stop, on_frame=bar.update)
            except KeyboardInterrupt:  # VideoInterrupted, or a second signal while finalising
                bar.close()
                kept = ", ".join(map(str, out.files())) or "no frame was written"
                frames = f"{out.frames} frame{'s' * (out.frames != 1)}"
                print(f"interrupted: {item}: {frames} written ({kept})")
                _say(f"interrupted by {stop.name or 'SIGINT'}: stopped after {frames} of {item}; kept: {kept}")
                return stop.exit_status
            except Exception as e:  # noqa: BLE001 - a failing video must not stop the others
                failures.append((item, f"{e} ({out.kept()})"))
                tqdm.write(f"failed: {item}: {e}", file=sys.stderr)
                continue
            finally:
                bar.close()
            print(f"{item}: {out.frames} frames, {out.people} people; {', '.join(map(str, out.files()))}")
    if not stop:
        return None
    _say(f"interrupted by {stop.name}: stopped between two videos; the outputs of those done are kept in {out_dir}/")
    return stop.exit_status


if __name__ == "__main__":
    sys.exit(main())

"""What inference writes: COCO results and pictures for images, JSON lines and a rendered video per video source.

``python -m bottomup.infer`` parses its command line and hands each input to these writers; they take plain
objects (an estimator, a frame source, a drawing style) and know nothing of the command line.

Files (all in one output folder, :func:`claim_output_dir`, named uniquely within a run by :class:`OutputNames`):

* :class:`ImageResults`: ``results.json`` (COCO keypoint results, one dict per person, ``file_name`` added, in
  original-image pixels), rewritten atomically as the run goes and on every way out, and ``<image stem>.png`` per
  image.
* :class:`VideoOutput`: ``<name>.jsonl`` (one line per processed frame, flushed as it is written) and
  ``<name>.mp4`` (the frames with each track drawn), both in frame pixels, always the same frames.

Nothing lost: :class:`StopSignals` turns SIGINT (Ctrl-C), SIGTERM and SIGHUP into a stop after the image or frame
at hand (a second signal stops at once), and the files are finalised on every way out (:func:`shielded` keeps a
signal from cutting a file in half). Nothing overwritten: :func:`claim_output_dir` moves a run whose folder holds
an earlier run's results into a new numbered folder beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bottomup.core.io import write_json

__all__ = [
    "LOCK_NAME",
    "STOP_SIGNALS",
    "ImageResults",
    "Interrupted",
    "OutputDirError",
    "OutputFolder",
    "OutputNames",
    "StopSignals",
    "VideoInterrupted",
    "VideoOutput",
    "claim_output_dir",
    "earlier_results",
    "image_id",
    "shielded",
]

#: The signals that stop a run: Ctrl-C, ``kill`` / a job scheduler's stop, the terminal closing.
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)

#: The hidden file that marks an output folder as being written by a run (removed when the run ends).
LOCK_NAME = ".bottomup-infer.lock"


def image_id(path: Path) -> int | None:
    """The COCO / CrowdPose image id of a file whose stem is all digits (``000000000785.jpg`` -> 785), else
    ``None``."""
    return int(path.stem) if path.stem.isdigit() else None


# ------------------------------------------------------------------------------------------------ signals
class Interrupted(KeyboardInterrupt):
    """A stop signal that ends the run at once (outside :meth:`StopSignals.deferred`, or a second one inside).

    Attributes:
        signum: the signal's number. name: its name (``SIGTERM``). exit_status: ``128 + signum`` (130 SIGINT,
            143 SIGTERM, 129 SIGHUP), the shell's convention.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.name = signal.Signals(signum).name
        self.exit_status = 128 + self.signum


class VideoInterrupted(KeyboardInterrupt):
    """A stop during :meth:`VideoOutput.write`: the lines and frames written so far are kept (the mp4 finalised)."""


_active: StopSignals | None = None  # the handler in place (signal handlers are per process)


class StopSignals:
    """SIGINT / SIGTERM / SIGHUP (:data:`STOP_SIGNALS`) handling of a run; a context manager that installs the
    handlers and restores the earlier ones on exit (outside the main thread it changes nothing).

    Outside :meth:`deferred`, a stop signal raises :class:`Interrupted` at once (nothing is being written then).
    Inside, the first one is only recorded (the object turns true; a loop checks it and ends after the image or
    frame it is on, so that every file is whole) and a second one raises :class:`Interrupted` at once; the writers
    still finalise their files. Inside :func:`shielded`, signals wait until the block is left.

    Attributes:
        signum: the first stop signal received, or ``None``.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferring = False
        self._shield = 0
        self._pending: int | None = None  # a signal that came while shielded and must raise on leaving
        self._previous: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        """The first signal's name (``SIGINT``), or ``""`` when none came."""
        return "" if self.signum is None else signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """``128 + signum`` (130 SIGINT, 143 SIGTERM, 129 SIGHUP); 130 when no signal was recorded (a
        KeyboardInterrupt raised otherwise)."""
        return 128 + (self.signum if self.signum is not None else signal.SIGINT)

    def __enter__(self) -> StopSignals:
        global _active
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
            _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        for s, previous in self._previous.items():
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        if _active is self:
            _active = None

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if first and self._deferring:
            return  # the loop ends after the item it is on
        if self._shield:
            self._pending = signum
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[StopSignals]:
        """While inside, the first stop signal only turns this object true (see the class)."""
        before, self._deferring = self._deferring, True
        try:
            yield self
        finally:
            self._deferring = before


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Stop signals wait while inside (a file being written or finalised is not cut in half); one that came is
    handled on leaving (raising :class:`Interrupted` where it would have). No-op without an active
    :class:`StopSignals`."""
    stops = _active
    if stops is None:
        yield
        return
    stops._shield += 1
    try:
        yield
    finally:
        stops._shield -= 1
        if not stops._shield and stops._pending is not None:
            signum, stops._pending = stops._pending, None
            raise Interrupted(signum)


# ------------------------------------------------------------------------------------------------ output folder
class OutputDirError(OSError):
    """An output folder that cannot be made or written into (the message names it and the reason)."""


@dataclass(frozen=True)
class OutputFolder:
    """The folder a run writes into (:func:`claim_output_dir`).

    Attributes:
        path: the folder.
        given: the folder asked for.
        reason: why ``path`` is not ``given`` (``"holds an earlier run's results (results.json)"``), or ``None``.
    """

    path: Path
    given: Path
    reason: str | None = None


def earlier_results(folder: Path, planned: Collection[str] = ()) -> list[str]:
    """Names of files in ``folder`` that an earlier run wrote or this run would overwrite: ``results.json``, any
    ``*.jsonl``, and the names in ``planned`` (sorted; empty when there are none or the folder does not exist)."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(n for n in names if n == "results.json" or n.endswith(".jsonl") or n in planned)


def _make(folder: Path, *, parents: bool) -> bool:
    """``mkdir``; True when this call made it, False when it was there.

    Raises:
        OutputDirError: it cannot be made, or it is a file.
    """
    try:
        folder.mkdir(parents=parents, exist_ok=False)
        return True
    except FileExistsError:
        if not folder.is_dir():
            raise OutputDirError(f"{folder}: a file of that name is there, not a folder") from None
        return False
    except OSError as e:
        raise OutputDirError(f"{folder}: cannot make this folder ({e.strerror or e})") from e


def _lock(folder: Path) -> bool:
    """Create ``folder/LOCK_NAME`` exclusively; False when another run holds it.

    Raises:
        OutputDirError: nothing can be written into the folder.
    """
    try:
        os.close(os.open(folder / LOCK_NAME, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return True
    except FileExistsError:
        return False
    except OSError as e:
        raise OutputDirError(f"{folder}: cannot write into this folder ({e.strerror or e})") from e


def _check_writable(folder: Path) -> None:
    """Write and remove a probe file in ``folder``.

    Raises:
        OutputDirError: it cannot be written into.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=".bottomup-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputDirError(f"{folder}: cannot write into this folder ({e.strerror or e})") from e


@contextlib.contextmanager
def claim_output_dir(
    given: str | os.PathLike, planned: Collection[str] = (), *, exist_ok: bool = False, limit: int = 9999
) -> Iterator[OutputFolder]:
    """The folder a run writes into, checked writable before any work and kept to this run while inside.

    ``given`` (made with its parents when missing) unless it holds an earlier run's results
    (:func:`earlier_results`: ``results.json``, ``*.jsonl`` or a name in ``planned``) or another run is writing
    into it; then the first of ``<given>2``, ``<given>3``, ... that this call creates (``mkdir(exist_ok=False)``:
    two concurrent runs never get the same one), as Ultralytics does. With ``exist_ok``, ``given`` whatever it
    holds (files of the same names are overwritten).

    While inside, a hidden :data:`LOCK_NAME` file (created with ``O_EXCL``) marks the folder as taken; on leaving
    it is removed, and so is a folder this call made that stayed empty.

    Args:
        given: the folder asked for.
        planned: the names of the files this run would write (``x.png``, ``clip.mp4``, ...).
        exist_ok: write into ``given`` even when it holds results.
        limit: the highest number tried.

    Raises:
        OutputDirError: the folder (or a numbered one) cannot be made, is a file, or cannot be written into.
    """
    given = Path(given)
    made = _make(given, parents=True)
    if exist_ok:
        _check_writable(given)
        try:
            yield OutputFolder(given, given)
        finally:
            _release(given, made, locked=False)
        return
    found = earlier_results(given, planned)
    if not found and _lock(given):
        path, reason = given, None
    else:
        listed = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        reason = f"holds an earlier run's results ({listed})" if found else "is being written by another run"
        path = _numbered(given, limit)
        made = True
    try:
        yield OutputFolder(path, given, reason)
    finally:
        _release(path, made, locked=True)


def _numbered(given: Path, limit: int) -> Path:
    """The first ``<given>N`` (N = 2, 3, ...) this call creates, locked.

    Raises:
        OutputDirError: none can be made (up to ``limit``).
    """
    for n in range(2, limit + 1):
        candidate = given.with_name(f"{given.name}{n}")
        if _make(candidate, parents=False):
            if _lock(candidate):
                return candidate
    raise OutputDirError(f"{given}: {given.name}2 ... {given.name}{limit} beside it are all taken")


def _release(folder: Path, made: bool, *, locked: bool) -> None:
    """Remove the lock, and ``folder`` when this run made it and it stayed empty."""
    if locked:
        (folder / LOCK_NAME).unlink(missing_ok=True)
    if made:
        with contextlib.suppress(OSError):  # not empty: it holds the results
            folder.rmdir()


class OutputNames:
    """Unique file names within one output folder for one run: a second input with the same stem gets
    ``<stem>_2``, ``<stem>_3``, ...

    Attributes:
        names: every file name handed out (with its suffix).
    """

    def __init__(self) -> None:
        self.names: set[str] = set()

    def reserve(self, stem: str, suffixes: Iterable[str]) -> str:
        """A name (no suffix) such that no ``<name><suffix>`` was handed out before in this run."""
        suffixes = tuple(suffixes)
        name, i = stem, 1
        while any(f"{name}{s}" in self.names for s in suffixes):
            i += 1
            name = f"{stem}_{i}"
        self.names.update(f"{name}{s}" for s in suffixes)
        return name


# ------------------------------------------------------------------------------------------------ images
class ImageResults:
    """The results of a run over images: COCO results collected per image into ``results.json``, a picture per
    image.

    ``results.json`` is written atomically (a kill leaves the previous version or the new one, never half) after
    the first image, then at most every ``flush_every_s`` seconds, and by :meth:`close`, which a run calls on
    every way out (``finally``), so that an interrupted run keeps the results of the images it did.

    Args:
        out_dir: the output folder.
        min_score: people below this score are left out (of the results and the pictures).
        style: drawing settings of ``Prediction.save`` (``min_score``, ``joint_threshold``, ``min_side``, ...);
            ``None``: no pictures.
        flush_every_s: least seconds between two writes of ``results.json`` while the run goes on.

    Attributes:
        path: ``out_dir/results.json``. results: the people so far. people: their number.
    """

    def __init__(
        self, out_dir: Path, *, min_score: float, style: dict[str, Any] | None, flush_every_s: float = 10.0
    ) -> None:
        self.path = Path(out_dir) / "results.json"
        self.min_score, self.style, self.flush_every_s = float(min_score), style, float(flush_every_s)
        self.results: list[dict[str, Any]] = []
        self.people = 0
        self._written_at: float | None = None

    def add(self, path: Path, prediction: Any, *, file_name: str | None = None, png: Path | None = None) -> None:
        """Keep the people of ``prediction`` (of the image at ``path``) and draw them into ``png``.

        Args:
            path: the image (its stem gives ``image_id`` when all digits).
            prediction: its ``Prediction``.
            file_name: the results' ``file_name`` (default: the file's name); ``expand_labelled_inputs`` gives one
                that tells apart files of one name in different folders.
            png: where to draw them (ignored without ``style``).

        Raises:
            OSError: the picture or ``results.json`` cannot be written (the results are kept).
        """
        kept = prediction[prediction.scores >= self.min_score]
        self.people += len(kept)
        name = path.name if file_name is None else file_name
        self.results.extend({"file_name": name, **r} for r in kept.to_coco(image_id(path)))
        try:
            if self.style is not None and png is not None:
                kept.save(png, **self.style)
        finally:
            if self._written_at is None or time.monotonic() - self._written_at >= self.flush_every_s:
                self.close()

    def close(self) -> Path:
        """Write ``results.json`` (atomically; stop signals wait until it is written) and return its path."""
        with shielded():
            write_json(self.path, self.results)
        self._written_at = time.monotonic()
        return self.path


# ------------------------------------------------------------------------------------------------ videos
class VideoOutput:
    """The files of one tracked video: a line of ``jsonl`` per frame (flushed, so that a kill keeps every finished
    line) and, with ``mp4``, the frame drawn (``FrameResult.plot(**style)``) into a video, always the same frames
    (a frame the video cannot take is in neither).

    Args:
        jsonl: the JSON-lines file.
        mp4: the rendered video, or ``None``.
        fps: its frame rate (frames per second of the processed frames).
        size: its ``(width, height)`` in pixels.
        style: drawing settings.

    Attributes:
        frames, people: written so far (also after an error).
    """

    def __init__(
        self, jsonl: Path, mp4: Path | None, *, fps: float, size: tuple[int, int], style: dict[str, Any]
    ) -> None:
        self.jsonl, self.mp4, self.fps, self.size, self.style = jsonl, mp4, fps, size, style
        self.frames = self.people = 0

    def files(self) -> list[Path]:
        """The files that hold the frames written (none when no frame was: they are removed then)."""
        return [p for p in (self.jsonl, self.mp4) if p is not None and self.frames and p.exists()]

    def kept(self) -> str:
        """What is on disk after an error, for a message: ``"the 12 frames before it are kept in out/clip.jsonl and
        out/clip.mp4"``, or ``"no frame was written"``."""
        files = self.files()
        if not files:
            return "no frame was written"
        frames = "the frame" if self.frames == 1 else f"the {self.frames} frames"
        return f"{frames} before it {'is' if self.frames == 1 else 'are'} kept in {' and '.join(map(str, files))}"

    def write(self, results: Iterable[Any], stop: Any, on_frame: Callable[[], None] | None = None) -> None:
        """Write ``results`` (``FrameResult`` per frame, ``PoseEstimator.track``) frame by frame.

        Args:
            results: the frames' results.
            stop: true once a stop signal came (:class:`StopSignals` inside ``deferred()``): the loop ends after a
                whole frame, so that the jsonl and the mp4 agree.
            on_frame: called after each frame (a progress bar).

        Raises:
            VideoInterrupted: ``stop`` became true, or a second signal (the files are closed and kept).
            ValueError: a frame of another size than the video's (it is in neither file).
            Exception: what reading or processing a frame raised (the files are closed and kept).
        """
        import cv2

        from bottomup.data.video import VideoWriter

        writer: VideoWriter | None = None
        made: list[Path] = []  # the files this call opened (an empty one is removed at the end)
        try:
            with self.jsonl.open("w", encoding="utf-8") as lines:
                made.append(self.jsonl)
                if self.mp4 is not None:
                    writer = VideoWriter(self.mp4, self.fps, self.size)
                    made.append(self.mp4)
                for result in results:
                    if stop:
                        raise VideoInterrupted
                    line = json.dumps(result.to_dict()) + "\n"
                    picture = None if writer is None else cv2.cvtColor(result.plot(**self.style), cv2.COLOR_RGB2BGR)
                    with shielded():  # both files get the frame, or neither
                        if writer is not None:
                            try:
                                writer.write(picture)
                            except ValueError as e:
                                raise ValueError(f"frame {result.index}: {e}") from None
                        lines.write(line)
                        lines.flush()
                        self.frames += 1
                    self.people += len(result.prediction)
                    if on_frame is not None:
                        on_frame()
                    if stop:
                        raise VideoInterrupted
        except VideoInterrupted:
            raise
        except KeyboardInterrupt as e:
            raise VideoInterrupted from e
        finally:
            with shielded():
                if writer is not None:
                    writer.close()
                if not self.frames:  # an empty jsonl and an mp4 without frames (it does not play) hold nothing
                    for p in made:
                        p.unlink(missing_ok=True)

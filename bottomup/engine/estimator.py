"""One pose estimator over every backend: image in, people out (Ultralytics' ``AutoBackend`` pattern).

:class:`PoseEstimator` holds what does not depend on where the network runs -- the keypoint layout, the test-time
settings (:class:`bottomup.engine.settings.TestSettings`), the channel order of image arrays, reading images,
building :class:`bottomup.engine.people.Prediction` results and tracking videos -- and hands each image to a
:class:`Backend`:

* ``bottomup.engine.inference.TorchBackend``: a PyTorch network through ``run_pipeline`` (multi-scale, flip,
  precision, folded / compiled copies; CPU or CUDA);
* ``bottomup.deploy.runtime.ExportedBackend``: an exported graph on ONNX Runtime or OpenVINO (numpy, no torch).

Every backend returns the one output type :class:`bottomup.engine.people.PipelineOutput`. This module imports
neither torch nor a runtime: the torch backend is loaded when a network is given, an exported one by
``bottomup.deploy.runtime``. ``bottomup.api.PoseEstimator`` adds the constructors from configs, checkpoints and
exported files (they need ``bottomup.build``); ``bottomup.deploy.runtime.DeployedPoseEstimator`` is the
torch-free constructor from an exported file.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bottomup.codec import AssociativeEmbeddingCodec
from bottomup.core.keypoints import KeypointLayout
from bottomup.data.io import read_image
from bottomup.engine.people import PipelineOutput, Prediction
from bottomup.engine.settings import TestSettings

__all__ = ["COLOR_ORDERS", "Backend", "FrameResult", "PoseEstimator", "Predictor"]

#: Channel orders an image array may come in (``PoseEstimator(color=...)``).
COLOR_ORDERS: tuple[str, ...] = ("rgb", "bgr")


@runtime_checkable
class Backend(Protocol):
    """Where the network (and what of the pipeline it holds) runs.

    Attributes:
        name: ``"torch"``, ``"onnxruntime"`` or ``"openvino"``.
        settings: the test settings it runs with (what an exported graph baked in, for an exported model).
    """

    name: str
    settings: TestSettings

    def run(self, rgb: np.ndarray, codec: AssociativeEmbeddingCodec) -> PipelineOutput:
        """One ``(H, W, 3)`` uint8 RGB image through the pipeline; ``codec`` holds the layout's indices and the
        grouping settings the decode applies."""
        ...

    def with_settings(self, settings: TestSettings) -> Backend:
        """The backend for other settings (raises ``ValueError`` for what it cannot change)."""
        ...


class PoseEstimator:
    """Bottom-up multi-person pose estimation with the official HigherHRNet test-time pipeline, on any backend.

    Calling it on an image (path, or ``(H, W, 3)`` uint8 array: RGB, or BGR with ``color="bgr"``) returns a
    :class:`Prediction` in original-image pixels; :meth:`run` also returns the maps (``bottomup.engine.explain``
    shows them); :meth:`track` follows people through a video.

    Args:
        model: a :class:`Backend`, or a PyTorch network ``x (1, 3, h, w) -> [outputs per stride]`` (e.g.
            ``bottomup.models.HigherHRNet``), which runs on ``bottomup.engine.inference.TorchBackend``: it is put in
            eval mode and moved to ``device`` (and to NHWC with ``channels_last``) in place.
        layout: the keypoint layout (names, flip pairs, joint order, skeleton, OKS sigmas); or give
            ``num_keypoints`` (channel-order names ``"0".."K-1"``, no flip pairs) -- then flip test needs
            ``flip_index``.
        num_keypoints, flip_index, joint_order: override the layout's.
        settings: the test-time settings (default ``TestSettings()``; a backend brings its own).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` / ``None`` (CUDA if available) for a network.
        color: channel order of the arrays given to :meth:`run` / ``__call__``: ``"rgb"`` (default; what
            ``bottomup.data.load_image``, PIL and matplotlib give) or ``"bgr"`` (``cv2.imread``, OpenCV's video
            capture). Image files are always decoded correctly. The wrong order finds other people.
        summary: what the weights are (``bottomup.build.describe_model``), shown by ``infer``.
        trained_on: the data config's name the weights were trained on (``"synthetic"`` for the quickstart's).
        **changes: test-time or grouping keys replacing those of ``settings`` (``input_size=640``,
            ``flip_test=False``, ``detection_threshold=0.2``, ...; :data:`bottomup.engine.settings.TEST_KEYS`).

    Raises:
        ValueError: unknown settings keys, a value out of range, an unknown color, an inconsistent layout.
    """

    def __init__(
        self,
        model: Any,
        *,
        layout: KeypointLayout | None = None,
        num_keypoints: int | None = None,
        flip_index: Sequence[int] | None = None,
        joint_order: Sequence[int] | None = None,
        settings: TestSettings | None = None,
        device: Any = None,
        color: str = "rgb",
        summary: str = "",
        trained_on: str = "",
        **changes: Any,
    ) -> None:
        if color not in COLOR_ORDERS:
            raise ValueError(f"color must be one of {COLOR_ORDERS} (the channel order of image arrays), got {color!r}")
        self.color = color
        if layout is None:
            if num_keypoints is None:
                raise ValueError("give a KeypointLayout (layout=...) or num_keypoints")
            layout = KeypointLayout(keypoint_names=tuple(str(i) for i in range(num_keypoints)))
        self.layout = layout
        self._flip_index = layout.flip_index if flip_index is None else flip_index
        self._joint_order = layout.joint_order_index if joint_order is None else joint_order
        if isinstance(model, Backend):
            backend = model if settings is None and not changes else model.with_settings(
                (settings or model.settings).replace(**changes)
            )  # fmt: skip
        else:
            from bottomup.engine.inference import TorchBackend

            backend = TorchBackend(model, (settings or TestSettings()).replace(**changes), device=device)
        self._set_backend(backend)
        self.summary = summary
        self.trained_on = trained_on

    def _set_backend(self, backend: Backend) -> None:
        self.backend = backend
        #: the layout's indices and the grouping settings; decodes every image
        self.codec = AssociativeEmbeddingCodec(
            self.layout.num_keypoints,
            joint_order=self._joint_order,
            flip_index=self._flip_index,
            grouping=backend.settings.grouping,
        )

    # ------------------------------------------------------------------------------------------------ settings
    @property
    def settings(self) -> TestSettings:
        """The test-time settings (the backend's)."""
        return self.backend.settings

    def with_settings(self, **changes: Any) -> PoseEstimator:
        """A copy running with ``changes`` (test-time or grouping keys); the same network or exported model.

        Raises:
            ValueError: an unknown key, a value out of range, or (exported models) a setting the graph holds.
        """
        out = copy.copy(self)
        out._set_backend(self.backend.with_settings(self.settings.replace(**changes)))
        return out

    input_size = property(lambda self: self.settings.input_size, doc="Short side of the input at scale 1, px.")
    scales = property(lambda self: self.settings.scales, doc="Test scales.")
    flip_test = property(lambda self: self.settings.flip_test, doc="Average with the mirrored image.")
    precision = property(
        lambda self: getattr(self.backend, "precision", self.settings.precision),
        doc="Network precision (an exported model's: ``fp32`` / ``int8``).",
    )
    fast_path = property(
        lambda self: getattr(self.backend, "fast_path", None),
        doc="What ``precision='auto'`` measured and picked on this machine (``path``, e.g. ``'fp32 channels_last "
        "folded'``, ``timings_ms``, ``correct``, ``cached``; ``bottomup.models.fast.measured_fast_path``); ``None`` "
        "when the settings named the path or for an exported model.",
    )
    channels_last = property(lambda self: self.settings.channels_last, doc="NHWC network memory format.")
    fold_bn = property(lambda self: self.settings.fold_bn, doc="Runs a BN-folded copy.")
    compile = property(lambda self: self.settings.compile, doc="Runs a compiled copy.")

    @property
    def grouping(self) -> dict[str, Any]:
        """The decode settings as a dict (``settings.grouping.as_dict()``)."""
        return self.settings.grouping.as_dict()

    @property
    def flip_index(self) -> list[int] | None:
        """Joint permutation under a horizontal flip (``codec.flip_index``)."""
        return None if self.codec.flip_index is None else list(self.codec.flip_index)

    @property
    def joint_order(self) -> list[int]:
        """Grouping's matching order (``codec.joint_order``)."""
        return list(self.codec.joint_order)

    @property
    def num_keypoints(self) -> int:
        """K."""
        return self.layout.num_keypoints

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        """The K keypoint names, in channel order."""
        return tuple(self.layout.keypoint_names)

    @property
    def skeleton(self) -> tuple[tuple[int, int], ...]:
        """Limbs as 0-based keypoint index pairs (for drawing)."""
        return tuple((int(a), int(b)) for a, b in self.layout.skeleton_index)

    @property
    def category_id(self) -> int:
        """The keypoint category id written into COCO results."""
        return int(self.layout.category_id)

    def __getattr__(self, name: str) -> Any:
        # what only one backend has (``model`` / ``device`` of the torch one, ``path`` / ``metadata`` of an export)
        if name != "backend" and "backend" in self.__dict__:
            return getattr(self.__dict__["backend"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ----------------------------------------------------------------------------------------------- one image
    def read(self, image: str | os.PathLike | np.ndarray) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 RGB image: a file decoded, an array checked (and reversed from BGR when
        ``color="bgr"``).

        Raises:
            bottomup.data.io.ImageReadError: missing / unreadable file.
            TypeError / ValueError: an array of the wrong type, shape or dtype.
        """
        rgb = read_image(image)
        if self.color == "bgr" and isinstance(image, np.ndarray):
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        return rgb

    def run(self, image: str | os.PathLike | np.ndarray) -> PipelineOutput:
        """One image through the pipeline with these settings (maps and people, :class:`PipelineOutput`).

        Raises:
            bottomup.data.io.ImageReadError: missing / unreadable file.
            TypeError / ValueError: an array of the wrong type, shape or dtype.
        """
        return self.backend.run(self.read(image), self.codec)

    def __call__(self, image: str | os.PathLike | np.ndarray) -> Prediction:
        """Detect people.

        Args:
            image: image file path, or ``(H, W, 3)`` uint8 array in the channel order ``color``.

        Returns:
            a :class:`Prediction` in original-image pixels, holding the RGB image.

        Raises:
            bottomup.data.io.ImageReadError: missing / unreadable file.
            TypeError / ValueError: array of the wrong type, shape or dtype.
        """
        rgb = self.read(image)
        out = self.backend.run(rgb, self.codec)
        return Prediction(
            keypoints=out.keypoints,
            scores=out.scores,
            keypoint_names=self.keypoint_names,
            skeleton=self.skeleton,
            image=rgb,
            category_id=self.category_id,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend!r}, keypoints={self.num_keypoints}, {self.settings})"

    # -------------------------------------------------------------------------------------------------- videos
    def track(
        self,
        source: str | os.PathLike | int | Iterable[np.ndarray],
        *,
        tracking: bool = True,
        min_score: float = 0.0,
        sequence: bool = False,
        fps: float = 30.0,
        stride: int = 1,
        max_frames: int | None = None,
        tracker: Any = None,
        **tracker_settings: Any,
    ) -> Iterator[FrameResult]:
        """People with identities, frame by frame, from a video, camera, stream or image sequence.

        Frames are read, estimated and tracked one at a time (a generator: memory stays flat over any length;
        stop iterating to stop reading). Tracking is :class:`bottomup.engine.tracking.PoseTracker` with the
        layout's ``oks_sigmas``.

        Example::

            for result in estimator.track("clip.mp4", max_age=30):
                print(result.index, result.time_s, result.track_ids, result.prediction.keypoints.shape)

        Args:
            source: a video file, camera index (``0`` or ``"0"``), stream URL (``rtsp://...``), image folder with
                ``sequence=True`` (``bottomup.data.video.open_source``), an open ``VideoSource``, or an iterable
                of ``(H, W, 3)`` uint8 arrays in this estimator's ``color`` order (times ``index / fps``).
            tracking: give track ids (else ``track_ids`` is ``None``).
            min_score: people scoring below this are dropped before tracking.
            sequence, fps, stride, max_frames: as :func:`bottomup.data.video.open_source` (``fps``: of an image
                sequence or array iterable, and of the tracker's clock where the source reports none).
            tracker: a ``PoseTracker`` to continue (default: a new one).
            **tracker_settings: ``bottomup.engine.tracking.TrackerSettings`` keys for the new tracker
                (``max_age``, ``min_similarity``, ``high_score``, ``low_score``, ``min_hits``, ``nms_oks``,
                ``max_jump``, ``max_joint_shift``, ``smoothing``, ...).

        Yields:
            :class:`FrameResult` per processed frame: keypoints in frame pixels (smoothed with ``smoothing``); with
            ``tracking``, only the people that hold a track (duplicates, low-score people that continue no track and
            tracks not yet confirmed are left out).

        Raises:
            bottomup.data.video.VideoReadError: the source cannot be opened or read (the message names it).
            ValueError: bad ``stride`` / ``max_frames`` / ``fps`` / tracker settings.
        """
        from bottomup.data.video import VideoSource, open_source
        from bottomup.engine.tracking import PoseTracker

        own: VideoSource | None = None
        if isinstance(source, VideoSource):
            video, rate = source, source.fps / source.stride
        elif isinstance(source, (str, os.PathLike, int)):
            own = video = open_source(source, sequence=sequence, fps=fps, stride=stride, max_frames=max_frames)
            rate = video.fps / video.stride
        else:
            video, rate = None, float(fps)
        if not tracking:
            tracker = None
        elif tracker is None:
            tracker = PoseTracker(self.layout.oks_sigmas, fps=rate, **tracker_settings)
        try:
            if video is not None:
                frames: Iterable[tuple[int, float, np.ndarray]] = (
                    (f.index, f.time_s, f.image if self.color == "bgr" else np.ascontiguousarray(f.image[..., ::-1]))
                    for f in video
                )
            else:
                frames = (
                    (i, i / float(fps), image)
                    for i, image in enumerate(itertools.islice(source, 0, max_frames and max_frames * stride, stride))  # type: ignore[arg-type]
                )
            for index, time_s, image in frames:
                if video is None:
                    index *= stride
                    time_s = index / float(fps)
                pred = self(image)
                pred = pred[pred.scores >= min_score]
                ids = None
                if tracker is not None:
                    ids, smoothed = tracker.update(pred.keypoints, time_s, scores=pred.scores)
                    if tracker.smoothing and len(pred):
                        pred = dataclasses.replace(pred, keypoints=smoothed)
                    tracked = ids > 0  # duplicates, unmatched low-score people, unconfirmed tracks: no id
                    pred, ids = pred[tracked], ids[tracked]
                yield FrameResult(index=index, time_s=time_s, prediction=pred, track_ids=ids)
        finally:
            if own is not None:
                own.close()


#: The torch path's estimator under its former name (``bottomup.engine.inference.Predictor`` before the backends
#: were unified): the same class.
Predictor = PoseEstimator


@dataclass(frozen=True)
class FrameResult:
    """The people of one video frame with their track ids: what :meth:`PoseEstimator.track` yields.

    Attributes:
        index: the frame's number in the source, 0-based.
        time_s: the frame's time, seconds (``index / fps`` for files; wall-clock for cameras and streams).
        prediction: the people (:class:`Prediction`, sorted by score; keypoints in frame pixels), holding the
            frame as ``(H, W, 3)`` uint8 RGB.
        track_ids: ``(N,)`` int64 track id (>= 1) of each person, or ``None`` without tracking.
    """

    index: int
    time_s: float
    prediction: Prediction
    track_ids: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON record of the frame (one line of ``python -m bottomup.infer``'s ``<video>.jsonl``):
        ``{"frame", "time_s", "people": [{"track_id" (int or null), "keypoints": [x, y, score] * K, "score"}]}``,
        coordinates in frame pixels rounded to 0.01, scores to 1e-4."""
        people = []
        for i, person in enumerate(self.prediction):
            kp = np.nan_to_num(person.keypoints, nan=0.0)
            flat = [round(float(v), 2) if j % 3 < 2 else round(float(v), 4) for j, v in enumerate(kp.ravel())]
            track_id = None if self.track_ids is None else int(self.track_ids[i])
            people.append({"track_id": track_id, "keypoints": flat, "score": round(float(person.score), 4)})
        return {"frame": int(self.index), "time_s": round(float(self.time_s), 4), "people": people}

    def plot(self, **style: Any) -> np.ndarray:
        """The frame with each person drawn in its track's colour (``bottomup.vis.draw.track_color``) and labelled
        with its id (with the score when untracked): ``(H, W, 3)`` uint8 RGB of the frame's size.

        Args:
            **style: :meth:`Prediction.plot` settings (``min_score``, ``joint_threshold``, ``radius``,
                ``thickness``, ``labels``); ``min_side`` defaults to 0 (no upscaling).
        """
        from bottomup.vis.draw import track_color

        style.setdefault("min_side", 0)
        if self.track_ids is None:
            return self.prediction.plot(**style)
        colors = [track_color(int(t)) for t in self.track_ids]
        return self.prediction.plot(colors=colors, texts=[f"#{int(t)}" for t in self.track_ids], **style)

"""Torch-free runtime of an exported model: image in, people out, on ONNX Runtime or OpenVINO.

An export (``python -m bottomup.export``, :mod:`bottomup.deploy.export`) is a model file -- ``.onnx`` or OpenVINO IR
``.xml`` (+ ``.bin``) -- holding :class:`bottomup.deploy.graph.DecodeGraph`, and a JSON file beside it with everything
else the test-time pipeline needs: keypoint names, flip index, joint order, skeleton, the input size rule,
normalisation, strides and the grouping settings. One JSON per model file, named after it (``model.onnx`` ->
``model.onnx.json``, ``model.xml`` -> ``model.xml.json``: :func:`metadata_path`), recording the model file's name and
SHA-256 checksums of its files (``model_file``, ``model_sha256``), which :func:`read_metadata` checks, so that a JSON
never describes another model file or an older version of it. Exports made before this naming have one
``<stem>.json``; it is still read when the model file's own JSON is missing, if it names this model file.
:class:`DeployedPoseEstimator` reads both, then per image:

1. ``bottomup.data.transforms.preprocess_array``: the official resize (short side ``input_size`` rounded up to a
   multiple of 64, long side by aspect) and ImageNet normalisation, in numpy;
2. the graph (network, flip test, stage / flip averaging, projection, NMS, top-k) on the backend;
3. ``bottomup.codec.grouping.group_candidates`` (Hungarian matching, adjust, refine) on its outputs;
4. ``bottomup.data.transforms.to_original``: keypoints back to original-image pixels.

An export with ``"udp": true`` (``test.udp``; exports without the key: false) runs steps 1, 3 and 4 with UDP
(``TestSettings.udp``: MMPose 0.x's UDP resize, decode and mapping back); its graph holds the UDP aggregation.

This module and everything it imports use numpy, OpenCV and scipy only: ``import bottomup.deploy.runtime`` leaves
``torch`` out of ``sys.modules`` (``tests/test_deploy.py`` checks it with torch made unimportable), so an edge
install can go without PyTorch: ``pip install "bottomup[deploy]"`` adds onnxruntime and openvino.

Letters: N people, K keypoints, M candidates per joint, L tag dimensions, H x W network input.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bottomup.codec import GROUPING_KEYS, AssociativeEmbeddingCodec, GroupingSettings
from bottomup.codec.grouping import candidates_from_topk, group_candidates
from bottomup.core.keypoints import COCO_OKS_SIGMAS, DEFAULT_OKS_SIGMA, KeypointLayout
from bottomup.data.transforms import ResizeTransform, preprocess_array, to_original
from bottomup.engine.estimator import PoseEstimator
from bottomup.engine.people import PipelineOutput
from bottomup.engine.settings import TestSettings

__all__ = [
    "BACKENDS",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "DeployedOutput",
    "DeployedPoseEstimator",
    "ExportedBackend",
    "ModelFileError",
    "backend_for",
    "find_metadata",
    "legacy_metadata_path",
    "metadata_path",
    "model_checksums",
    "model_files",
    "read_metadata",
    "verify_model_files",
]

#: ``"format"`` value of an export's JSON, and its layout version.
EXPORT_FORMAT, EXPORT_VERSION = "bottomup-deploy", 2  # 2: graph tags (K, L, h, w), were (K, h, w, L)
#: Runtimes of exported files (``"torch"`` runs checkpoints: ``bottomup.api.PoseEstimator``).
BACKENDS = ("onnxruntime", "openvino")
#: Model-file suffix -> the backend that runs it by default.
SUFFIX_BACKEND = {".onnx": "onnxruntime", ".xml": "openvino"}
INSTALL_HINT = 'pip install "bottomup[deploy]"'
#: Keys every export JSON holds (:func:`read_metadata` checks them).
REQUIRED_KEYS = (
    "format",
    "version",
    "keypoint_names",
    "flip_index",
    "joint_order",
    "skeleton",
    "input_size",
    "input_multiple",
    "mean",
    "std",
    "flip_test",
    "grouping",
    "input_name",
    "output_names",
)
#: Grouping settings baked into the graph (NMS window and top-k): a runtime override would not act.
GRAPH_GROUPING_KEYS = ("nms_kernel", "max_people")
#: Grouping settings the host applies (may be overridden at load time).
HOST_GROUPING_KEYS = tuple(k for k in GROUPING_KEYS if k not in GRAPH_GROUPING_KEYS)


class ModelFileError(ValueError):
    """An exported model file or its JSON is missing, unreadable or does not fit (the message names the file)."""


def metadata_path(model_path: str | os.PathLike) -> Path:
    """The JSON of a model file: same folder, the model file's name + ``.json`` (``model.onnx`` ->
    ``model.onnx.json``, ``model.xml`` -> ``model.xml.json``), so that a ``.onnx`` and an ``.xml`` of one stem
    each keep their own."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def legacy_metadata_path(model_path: str | os.PathLike) -> Path:
    """Where exports before one JSON per model file put it: same stem, suffix ``.json`` (shared by a ``.onnx`` and
    an ``.xml`` of that stem). :func:`read_metadata` reads it only when :func:`metadata_path` is missing and only if
    its ``model_file`` names this model file."""
    return Path(model_path).with_suffix(".json")


def find_metadata(model_path: str | os.PathLike) -> Path:
    """The JSON :func:`read_metadata` reads for ``model_path``: :func:`metadata_path`, or the
    :func:`legacy_metadata_path` of an older export when only that exists (:func:`metadata_path` when neither)."""
    own, legacy = metadata_path(model_path), legacy_metadata_path(model_path)
    return legacy if not own.is_file() and legacy.is_file() else own


def model_files(model_path: str | os.PathLike) -> list[Path]:
    """The files a model consists of: the ``.onnx`` alone; an OpenVINO ``.xml`` and its ``.bin`` (weights)."""
    path = Path(model_path)
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_checksums(model_path: str | os.PathLike) -> dict[str, str]:
    """``{file name: SHA-256 hex digest}`` of each of :func:`model_files` (what an export's JSON records as
    ``model_sha256``).

    Raises:
        OSError: a file cannot be read (e.g. an ``.xml`` whose ``.bin`` is missing).
    """
    return {p.name: _sha256(p) for p in model_files(model_path)}


def verify_model_files(model_path: str | os.PathLike, meta: dict[str, Any], json_path: str | os.PathLike) -> None:
    """Check that ``meta`` (read from ``json_path``) describes ``model_path``: its ``model_file`` names it and, when
    the JSON records ``model_sha256`` (exports since one JSON per model file; required in a
    :func:`metadata_path` JSON), every file of the model has the recorded checksum.

    Raises:
        ModelFileError: another model file named, a file missing, or a checksum that differs (the message names the
            model file and the JSON, and says to export again).
    """
    path, json_path = Path(model_path), Path(json_path)
    again = f"export again (python -m bottomup.export CHECKPOINT {path.name}) so that the two are written together"
    named = meta.get("model_file")
    if named is not None and named != path.name:
        raise ModelFileError(
            f"{json_path} describes the model file {named!r}, not {path}: the JSON belongs to another export; {again}"
        )
    recorded = meta.get("model_sha256")
    if recorded is None:
        if json_path == metadata_path(path):
            raise ModelFileError(f"{json_path}: no 'model_sha256' checksum of {path.name}; {again}")
        return  # an export before checksums (its <stem>.json names this model file)
    if not isinstance(recorded, dict):
        raise ModelFileError(f"{json_path}: 'model_sha256' must map file names to checksums; {again}")
    for file in model_files(path):
        if not file.is_file():
            raise ModelFileError(f"{file}: missing; {path.name} needs it beside it (copy it along, or {again})")
        want = recorded.get(file.name)
        if want is None:
            raise ModelFileError(f"{json_path} records no checksum of {file.name}; {again}")
        got = _sha256(file)
        if got != want:
            raise ModelFileError(
                f"{file} does not match {json_path}: SHA-256 {got[:12]}... but the JSON was written for "
                f"{want[:12]}... (the model file was replaced or changed after the export, or the JSON belongs to "
                f"another export); {again}"
            )


def backend_for(model_path: str | os.PathLike, backend: str | None = None) -> str:
    """The backend that runs ``model_path``: ``backend`` if given, else by suffix (``.onnx``: onnxruntime, ``.xml``:
    openvino; OpenVINO also reads ``.onnx``).

    Raises:
        ModelFileError: an unknown suffix without ``backend``, or ONNX Runtime asked to run an OpenVINO IR.
        ValueError: an unknown backend name.
    """
    path = Path(model_path)
    if backend is not None and backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {BACKENDS} for an exported model (or 'torch' for a checkpoint), got {backend!r}"
        )
    if backend is None:
        if path.suffix not in SUFFIX_BACKEND:
            raise ModelFileError(
                f"{path}: not an exported model (expected a .onnx or OpenVINO .xml file written by python -m bottomup.export)"
            )
        return SUFFIX_BACKEND[path.suffix]
    if backend == "onnxruntime" and path.suffix != ".onnx":
        raise ModelFileError(
            f"{path}: onnxruntime runs .onnx files written by python -m bottomup.export (export the checkpoint "
            "first; backend='openvino' runs an OpenVINO .xml)"
        )
    if backend == "openvino" and path.suffix not in SUFFIX_BACKEND:
        raise ModelFileError(f"{path}: openvino runs .xml / .onnx files written by python -m bottomup.export")
    return backend


def read_metadata(model_path: str | os.PathLike, *, verify: bool = True) -> dict[str, Any]:
    """Read and check the JSON of ``model_path``: :func:`metadata_path`, else (an older export) the
    :func:`legacy_metadata_path` if it names this model file.

    Args:
        model_path: the ``.onnx`` / ``.xml``.
        verify: also check that the JSON describes this model file (:func:`verify_model_files`: name and SHA-256
            checksums).

    Returns:
        the JSON object (see :func:`bottomup.deploy.export.export_metadata` for its keys).

    Raises:
        ModelFileError: the JSON is missing, not JSON, not an export's, of another version, misses keys / holds
            inconsistent ones, or describes another model file or other contents (the message names the JSON
            file and the key, or both files).
    """
    path = find_metadata(model_path)
    legacy = legacy_metadata_path(model_path)
    if not path.is_file():
        raise ModelFileError(
            f"{path}: missing; an exported model needs the JSON that python -m bottomup.export writes beside "
            f"{Path(model_path).name} (export again, or copy it along)"
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: not a readable JSON file ({e}); export the model again") from e
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise ModelFileError(f'{path}: not a bottomup export description (its "format" must be {EXPORT_FORMAT!r})')
    if meta.get("version") != EXPORT_VERSION:
        raise ModelFileError(
            f"{path}: export version {meta.get('version')!r}, this runtime reads version {EXPORT_VERSION}; export again"
        )
    if path == legacy and meta.get("model_file") != Path(model_path).name:
        raise ModelFileError(
            f"{path} describes the model file {meta.get('model_file')!r}, not {Path(model_path).name}, and "
            f"{metadata_path(model_path).name} is missing: export {Path(model_path).name} again (python -m "
            "bottomup.export), which writes its own JSON"
        )
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelFileError(f"{path}: keys {missing} missing; export the model again")
    k = len(meta["keypoint_names"])
    for key in ("flip_index", "joint_order"):
        value = meta[key]
        if key == "flip_index" and value is None and not meta["flip_test"]:
            continue
        if not isinstance(value, list) or sorted(value) != list(range(k)):
            raise ModelFileError(
                f"{path}: {key!r} must be a permutation of range({k}) (one entry per keypoint name), got {value!r}"
            )
    unknown = set(meta["grouping"]) - set(GRAPH_GROUPING_KEYS + HOST_GROUPING_KEYS)
    if unknown:
        raise ModelFileError(f"{path}: unknown grouping keys {sorted(unknown)}")
    if verify:
        verify_model_files(model_path, meta, path)
    return meta


def _missing_extra(package: str, error: ImportError) -> ImportError:
    return ImportError(f"the {package} backend needs the package {package!r}, which is not installed: {INSTALL_HINT}")


class _OnnxRuntime:
    """ONNX Runtime session on the CPU: ``run(x)`` -> the graph's outputs in ``output_names`` order."""

    def __init__(self, path: Path, meta: dict[str, Any], threads: int | None, json_name: str) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise _missing_extra("onnxruntime", e) from e
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelFileError(f"{path}: ONNX Runtime cannot load it as an ONNX model ({e})") from e
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = {o.name: o for o in self.session.get_outputs()}
        self.output_names = list(meta["output_names"])
        if inputs != [meta["input_name"]] or not set(self.output_names) <= set(outputs):
            raise ModelFileError(
                f"{path}: inputs {inputs} / outputs {sorted(outputs)} do not match its JSON ({meta['input_name']!r} -> "
                f"{self.output_names}); the model file and {json_name} come from different exports"
            )
        self.input_name = inputs[0]
        self.heatmap_channels = outputs[self.output_names[0]].shape[0]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: x})


class _OpenVINO:
    """OpenVINO compiled model on the CPU (IR ``.xml`` or ``.onnx``), fp32 inference precision."""

    def __init__(self, path: Path, meta: dict[str, Any], threads: int | None, json_name: str) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise _missing_extra("openvino", e) from e
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError / its own types
            raise ModelFileError(f"{path}: OpenVINO cannot read it as a model ({e})") from e
        names = [set(o.get_names()) for o in model.outputs]
        self.output_names = list(meta["output_names"])
        index = {}
        for name in self.output_names:
            hits = [i for i, n in enumerate(names) if name in n]
            if not hits:
                raise ModelFileError(
                    f"{path}: no output named {name!r} (its outputs: {names}); the model file and "
                    f"{json_name} come from different exports"
                )
            index[name] = hits[0]
        self.order = [index[n] for n in self.output_names]
        dim = model.outputs[self.order[0]].get_partial_shape()[0]
        self.heatmap_channels = dim.get_length() if dim.is_static else None
        # f32 inference precision: CPUs with bf16 / AMX would otherwise run an fp32 IR in bf16 by default.
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.request.infer({0: x})
        return [self.request.get_output_tensor(i).data.copy() for i in self.order]


#: What one image through an exported model gives: the one output type of every backend (numpy arrays here).
DeployedOutput = PipelineOutput


class ExportedBackend:
    """An exported model (``.onnx`` or OpenVINO ``.xml`` + its JSON) behind ``PoseEstimator``, without torch.

    Per image: ``preprocess_array`` (one scale, the official resize and normalisation) -> the graph (network,
    flip test, stage / flip averaging, projection, NMS, top-k) on ONNX Runtime or OpenVINO ->
    ``group_candidates`` (matching, adjust, refine) on the host -> ``to_original``.

    Args:
        path: the model file (``.onnx`` or ``.xml``).
        backend: ``"onnxruntime"`` or ``"openvino"``; default by the suffix (``.onnx``: onnxruntime).
        threads: CPU threads of the runtime (default: its choice, all cores).

    Attributes:
        name: the runtime, ``"onnxruntime"`` or ``"openvino"``.
        settings: the exported test settings (input size, flip test, UDP, grouping); only the host's grouping keys
            (:data:`HOST_GROUPING_KEYS`) can change (:meth:`with_settings`).
        metadata: the export's JSON; metadata_file: where it was read (:func:`find_metadata`). precision:
            ``"fp32"`` or ``"int8"`` (the graph's).
        layout: the keypoint layout from the JSON (exports without ``oks_sigmas`` get COCO's by keypoint name).

    Raises:
        ModelFileError: missing / unreadable model file or JSON, files of different exports (a JSON naming another
            model file, or checksums that differ: :func:`verify_model_files`), or a JSON whose keypoints do not
            match the model's output channels (the message names the file).
        ImportError: the runtime's package is missing (the message names the ``deploy`` extra).
        ValueError: unknown backend.
    """

    def __init__(self, path: str | os.PathLike, *, backend: str | None = None, threads: int | None = None) -> None:
        self.path = Path(path)
        self.name = backend_for(self.path, backend)
        if not self.path.is_file():
            raise ModelFileError(f"{self.path}: no such model file")
        meta = read_metadata(self.path)
        #: the JSON read (:func:`find_metadata`)
        self.metadata_file = find_metadata(self.path)
        self.metadata = meta
        try:
            udp = meta.get("udp", False)
            if not isinstance(udp, bool):
                raise ValueError(f"udp must be true or false, got {udp!r}")
            self.settings = TestSettings(
                input_size=int(meta["input_size"]),
                flip_test=bool(meta["flip_test"]),
                udp=udp,
                grouping=GroupingSettings.from_mapping(meta["grouping"]),
            )
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"{self.metadata_file}: bad test settings ({e}); export again") from e
        self.precision = str(meta.get("precision", "fp32"))
        self.strides = tuple(int(s) for s in meta.get("strides", (4, 2)))
        #: what the weights are, as the export described them (checkpoint summary)
        self.summary = str(meta.get("summary", ""))
        self.trained_on = str(meta.get("trained_on", ""))
        names = tuple(str(n) for n in meta["keypoint_names"])
        runner = _OnnxRuntime if self.name == "onnxruntime" else _OpenVINO
        self._net = runner(self.path, meta, threads, self.metadata_file.name)
        channels = self._net.heatmap_channels
        if isinstance(channels, int) and channels != len(names):
            raise ModelFileError(
                f"{self.metadata_file}: {len(names)} keypoint names, but {self.path.name} outputs "
                f"{channels} heatmap channels; the JSON belongs to another export"
            )
        try:
            flip = meta["flip_index"] or list(range(len(names)))
            self.layout = KeypointLayout(
                keypoint_names=names,
                flip_pairs=tuple((names[i], names[int(j)]) for i, j in enumerate(flip) if i < int(j)),
                skeleton=tuple((names[int(a)], names[int(b)]) for a, b in meta["skeleton"]),
                joint_order=tuple(names[int(j)] for j in meta["joint_order"]),
                oks_sigmas=tuple(meta.get("oks_sigmas") or [COCO_OKS_SIGMAS.get(n, DEFAULT_OKS_SIGMA) for n in names]),
                category_id=int(meta.get("category_id", 1)),
            )
        except (IndexError, TypeError, ValueError) as e:
            raise ModelFileError(f"{self.metadata_file}: inconsistent keypoint layout ({e}); export again") from e

    def with_settings(self, settings: TestSettings) -> ExportedBackend:
        """The same model with other host grouping settings.

        Raises:
            ValueError: a change of a setting the graph holds (input size, flip test, NMS kernel, ``max_people``,
                ...): the message names it and says to export again.
        """
        fixed = [k for k, v in settings.flat().items() if k not in HOST_GROUPING_KEYS and v != self.settings.flat()[k]]
        if fixed:
            raise ValueError(
                f"{sorted(fixed)} are part of the exported graph ({self.path.name}: input_size "
                f"{self.settings.input_size}, flip_test {self.settings.flip_test}, udp {self.settings.udp}, grouping "
                f"{self.metadata['grouping']}); export again with other test settings to change them"
            )
        out = copy.copy(self)
        out.settings = settings
        return out

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, ResizeTransform]:
        """``(1, 3, h, w)`` float32 network input and its ``ResizeTransform`` (``preprocess_array``, UDP as
        exported)."""
        return preprocess_array(rgb, self.settings.input_size, udp=self.settings.udp)

    def network(self, x: np.ndarray) -> list[np.ndarray]:
        """The graph on one input: ``[heatmaps (K, h, w), tags (K, L, h, w), candidate_values (K, M),
        candidate_indices (K, M), candidate_tags (K, M, L)]`` (``bottomup.deploy.graph.DecodeGraph.forward``)."""
        return self._net(x)

    def decode(
        self, outputs: list[np.ndarray], transform: ResizeTransform, codec: AssociativeEmbeddingCodec
    ) -> PipelineOutput:
        """Group the graph's outputs (``group_candidates`` with ``codec``'s settings) and map them to
        original-image pixels.

        Returns:
            a ``PipelineOutput`` with numpy maps ``(1, K, h, w)`` / ``(1, K, h, w, L)``.
        """
        heat, tags, values, indices, cand_tags = outputs
        tags = np.moveaxis(tags, 1, -1)  # (K, h, w, L) view for the grouping
        cands = candidates_from_topk(values, indices, cand_tags, heat.shape[-1])
        grouped, scores = group_candidates(
            cands, heat, tags, joint_order=codec.joint_order, settings=codec.grouping_settings, udp=self.settings.udp
        )
        keypoints = to_original(grouped[..., :3], transform, map_size=(heat.shape[-1], heat.shape[-2]))
        return PipelineOutput(heat[None], tags[None], transform, grouped, keypoints, scores)

    def run(self, rgb: np.ndarray, codec: AssociativeEmbeddingCodec) -> PipelineOutput:
        """One ``(H, W, 3)`` uint8 RGB image through the exported pipeline."""
        x, transform = self.preprocess(rgb)
        return self.decode(self.network(x), transform, codec)

    def __repr__(self) -> str:
        return f"ExportedBackend({str(self.path)!r}, {self.name}, {self.precision})"


class DeployedPoseEstimator(PoseEstimator):
    """``PoseEstimator`` on an exported model (``.onnx`` or OpenVINO ``.xml`` + its JSON), without torch: the
    torch-free constructor (``bottomup.api.PoseEstimator.from_exported`` builds the same with the API's class).

    Same behaviour as the torch path with the exported settings (one scale, flip test as exported): calling it on
    an image (path, or ``(H, W, 3)`` uint8 array, RGB or BGR with ``color="bgr"``) returns a
    :class:`bottomup.engine.people.Prediction` in original-image pixels (``plot`` / ``save`` need matplotlib,
    not torch).

    Args:
        path: the model file (``.onnx`` or ``.xml``).
        backend: ``"onnxruntime"`` or ``"openvino"``; default by the suffix (``.onnx``: onnxruntime).
        threads: CPU threads of the backend (default: the backend's choice, all cores).
        color: channel order of image arrays, ``"rgb"`` (default) or ``"bgr"`` (OpenCV).
        **grouping: host grouping settings to override (``detection_threshold``, ``tag_threshold``,
            ``use_detection_val``, ``ignore_too_much``, ``adjust``, ``refine``, ``assignment``); ``nms_kernel``
            and ``max_people`` are part of the graph (export again to change them).

    Raises:
        ModelFileError: as :class:`ExportedBackend`. ImportError: the backend's package is missing.
        ValueError: unknown backend, color or grouping key, or a key the graph holds.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        backend: str | None = None,
        threads: int | None = None,
        color: str = "rgb",
        **grouping: Any,
    ) -> None:
        exported = ExportedBackend(path, backend=backend, threads=threads)
        super().__init__(
            exported,
            layout=exported.layout,
            color=color,
            summary=exported.summary,
            trained_on=exported.trained_on,
            **grouping,
        )

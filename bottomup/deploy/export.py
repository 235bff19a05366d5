"""Export a ``Predictor`` (network + test settings) to ONNX or OpenVINO IR with its test-time graph, optionally INT8.

Writes the model file and its JSON beside it (:func:`export_metadata`; ``model.onnx`` -> ``model.onnx.json``,
``bottomup.deploy.runtime.metadata_path``), which :class:`bottomup.deploy.runtime.DeployedPoseEstimator` reads; the
JSON records the model file's name and SHA-256 checksums (of the ``.onnx``, or of the ``.xml`` and its ``.bin``),
and the runtime refuses a model file that does not match them. Everything is written into a temporary folder beside
the target and moved into place at the end (weights, model file, JSON last): a failed export leaves the files that
were there before. The graph is :class:`bottomup.deploy.graph.DecodeGraph`:
network, flip test, stage / flip averaging, projection, NMS and top-k; grouping stays on the host.

* ONNX: ``torch.onnx.export`` with the dynamo exporter (``torch.export``; opset 18, the opset it targets in torch
  2.x) or the TorchScript exporter (opset 17, ~10x faster to export); dynamic height and width (any multiple of
  the network's input multiple, 32; the official resize gives multiples of 64 at scale 1). Weights inside the file.
* OpenVINO IR: ``openvino.convert_model`` on the ONNX file, ``openvino.save_model`` (``.xml`` + ``.bin``, fp32
  weights).
* INT8: post-training static quantisation with calibration images resized and normalised like at test time --
  OpenVINO IR by NNCF (``nncf.quantize``, default performance preset; the output convolutions ``final_layers``
  stay in float), ONNX by ONNX Runtime (``quantize_static``, QDQ, convolutions only); the decode ops (interpolation,
  max-pool, top-k) stay in float so that NMS does not see quantised heatmaps.

Letters: K keypoints, M = ``max_people``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bottomup.core.io import write_json
from bottomup.data.io import read_image
from bottomup.data.transforms import IMAGENET_MEAN, IMAGENET_STD, INPUT_MULTIPLE, preprocess_array, resize_transform
from bottomup.deploy.graph import INPUT_NAME, OUTPUT_NAMES, DecodeGraph
from bottomup.deploy.runtime import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    INSTALL_HINT,
    metadata_path,
    model_checksums,
    model_files,
    read_metadata,
)
from bottomup.engine.estimator import PoseEstimator as Predictor

__all__ = [
    "EXPORTERS",
    "FORMATS",
    "calibration_inputs",
    "convert_to_openvino",
    "export_metadata",
    "export_model",
    "quantize_onnx",
    "network_node_names",
    "decode_node_names",
    "INT8_OPS",
    "MIN_CALIBRATION_IMAGES",
]

log = logging.getLogger(__name__)

#: Output formats and their model-file suffix.
FORMATS = {"onnx": ".onnx", "openvino": ".xml"}
#: ``torch.onnx.export`` front ends and their opset.
EXPORTERS = {"dynamo": 18, "torchscript": 17}
#: Fewer INT8 calibration images than this get a warning. Static quantisation fixes each quantised layer's range
#: from the activations of the calibration images (MinMax for ONNX Runtime; NNCF's statistics); a handful of images
#: gives ranges of a handful of scenes, which clip or waste the 256 levels on others. 32 is a floor, not a target
#: (the CLI takes up to ``--calib-count`` 100; a few hundred real images of the deployment's kind are better).
MIN_CALIBRATION_IMAGES = 32


def export_metadata(predictor: Predictor, *, precision: str = "fp32", **extra: Any) -> dict[str, Any]:
    """The JSON written beside an exported model: everything the runtime needs besides the graph.

    Keys: ``format`` / ``version``; the layout (``keypoint_names``, ``flip_index``, ``joint_order``, ``skeleton``,
    ``oks_sigmas`` (tracking's OKS), ``category_id``); the input size rule (``input_size``: short side at scale 1, rounded up to a multiple of 64
    with the long side by aspect, then to ``input_multiple``; ``resize``: its name); normalisation (``mean`` /
    ``std`` of RGB in [0, 1], ``pixel_scale`` 1/255); ``strides`` of the network outputs; test-time settings
    (``flip_test``, ``scales`` = ``[1.0]``, ``udp``: the UDP resize, aggregation, decode and mapping back of
    ``test.udp``, in the graph and on the host; ``grouping``: NMS kernel and M in the graph, the rest on the host);
    the graph's ``input_name`` / ``output_names``; ``precision`` (fp32 / int8); ``extra`` (summary, exporter, ...).
    When written, ``model_file`` (the model file's name) and ``model_sha256`` (``{file name: SHA-256}`` of the
    ``.onnx``, or of the ``.xml`` and ``.bin``) are added, which the runtime checks
    (``bottomup.deploy.runtime.verify_model_files``).
    """
    codec = predictor.codec
    layout = predictor.layout
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "keypoint_names": list(layout.keypoint_names),
        "flip_index": list(codec.flip_index) if codec.flip_index is not None else None,
        "joint_order": list(codec.joint_order),
        "skeleton": [[int(a), int(b)] for a, b in layout.skeleton_index],
        "oks_sigmas": [float(s) for s in layout.oks_sigmas],
        "category_id": int(layout.category_id),
        "input_size": int(predictor.input_size),
        "input_multiple": INPUT_MULTIPLE,
        "resize": (
            "MMPose 0.x UDP: sizes of get_multi_scale_size, scaled by (size - 1) / (side - 1) about pixel (0, 0)"
            if predictor.settings.udp
            else "official get_multi_scale_size: short side ceil64(input_size), long side ceil64 by aspect, centred"
        ),
        "color": "RGB",
        "pixel_scale": 1.0 / 255.0,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "strides": list(codec.strides),
        "flip_test": bool(predictor.flip_test),
        "udp": bool(predictor.settings.udp),
        "scales": [1.0],
        "grouping": dict(codec.grouping),
        "input_name": INPUT_NAME,
        "output_names": list(OUTPUT_NAMES),
        "precision": precision,
        **extra,
    }


def _example_input(input_size: int) -> torch.Tensor:
    """A 4:3 landscape network input of the test-time size (the traced shapes; H and W stay dynamic)."""
    tf = resize_transform(3 * input_size, 4 * input_size, input_size)
    return torch.zeros(1, 3, tf.size[1], tf.size[0])


def _export_onnx(graph: DecodeGraph, path: Path, input_size: int, exporter: str) -> None:
    x = _example_input(input_size)
    opset = EXPORTERS[exporter]
    if exporter == "dynamo":
        side_h = torch.export.Dim("height_32", min=1, max=4096 // INPUT_MULTIPLE)
        side_w = torch.export.Dim("width_32", min=1, max=4096 // INPUT_MULTIPLE)
        program = torch.onnx.export(
            graph,
            (x,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"image": {2: INPUT_MULTIPLE * side_h, 3: INPUT_MULTIPLE * side_w}},
            verbose=False,
        )
        program.save(str(path), external_data=False)
    else:
        with warnings.catch_warnings():
            # shape checks of the network / aggregation become constants of the trace: intended (their inputs are
            # channel counts, fixed in the graph; H and W stay dynamic)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            _export_torchscript(graph, x, path, opset)


def _export_torchscript(graph: DecodeGraph, x: torch.Tensor, path: Path, opset: int) -> None:
    """The TorchScript exporter (a trace): H and W dynamic through ``dynamic_axes``."""
    torch.onnx.export(
        graph,
        (x,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_axes={INPUT_NAME: {2: "height", 3: "width"}},
    )


def calibration_inputs(images: Sequence[str | os.PathLike], input_size: int, *, udp: bool = False) -> list[np.ndarray]:
    """Network inputs for INT8 calibration: each image resized (the UDP resize with ``udp``) and normalised like at
    test time.

    Fewer than :data:`MIN_CALIBRATION_IMAGES` images are used with a warning (the ranges then come from a few
    scenes).

    Args:
        images: image files (``bottomup.data.io.expand_inputs`` expands folders / globs).
        input_size: the test-time short side.

    Returns:
        ``(1, 3, h, w)`` float32 arrays, one per image.

    Raises:
        ValueError: no images. bottomup.data.io.ImageReadError: an unreadable file (named).
    """
    if not images:
        raise ValueError("INT8 calibration needs images (--calib FOLDER with a few hundred real images; 20+ work)")
    if len(images) < MIN_CALIBRATION_IMAGES:
        log.warning(
            "INT8 calibration on %d image%s only (at least %d recommended, a few hundred is better): the quantisation "
            "ranges come from those scenes and may clip others; give --calib a folder of more real images",
            len(images), "" if len(images) == 1 else "s", MIN_CALIBRATION_IMAGES,
        )  # fmt: skip
    return [preprocess_array(read_image(p), input_size, udp=udp)[0] for p in images]


def _publish(staged: Path, path: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """Move a model staged in a temporary folder (``staged``, named ``path.name``; with its ``.bin`` for an IR) to
    ``path``'s folder with its JSON: the JSON (``meta`` + ``model_file`` + ``model_sha256`` of the staged files) is
    written beside ``staged`` first, then the weights, the model file and the JSON last replace their namesakes
    (``os.replace``, same file system). A failure before the moves leaves the files that were there; between them,
    the checksums make the runtime refuse the mix.

    Returns:
        ``{"model", "metadata"}`` (+ ``"weights"`` for an IR) at their final paths.
    """
    if staged.name != path.name:
        raise ValueError(f"staged model {staged.name} must have the final name {path.name}")
    meta = {**meta, "model_file": path.name, "model_sha256": model_checksums(staged)}
    write_json(metadata_path(staged), meta)
    files = model_files(staged)
    for src in [*files[1:], files[0], metadata_path(staged)]:
        os.replace(src, path.parent / src.name)
    written = {"model": path, "metadata": metadata_path(path)}
    if len(files) > 1:
        written["weights"] = path.with_suffix(".bin")
    return written


def _quantize_openvino(model: Any, inputs: list[np.ndarray], decode_nodes: Collection[str]) -> Any:
    """NNCF post-training quantisation of a converted ``DecodeGraph``, the decode left in float.

    ``decode_nodes``: ONNX node names outside the network (``decode_node_names``); the OpenVINO ops of the same
    names are ignored. NNCF's own choice would also quantise the flip average, the max-pool and the comparison of the
    NMS, which run on heatmaps: 8-bit heatmaps tie everywhere, and the official-initialisation W32 then found no
    people at all (every other path ~70 per image).
    """
    try:
        import nncf
    except ImportError as e:
        raise ImportError(f"INT8 export needs NNCF, which is not installed: {INSTALL_HINT}") from e
    logging.getLogger("nncf").setLevel(logging.WARNING)  # one INFO line per op otherwise
    decode = set(decode_nodes)
    ignored_names = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name() in decode]
    if not ignored_names:
        raise RuntimeError("none of the graph's decode nodes found in the OpenVINO model: cannot keep them in float")
    # The network's upsampling stays in float too, and so do its output convolutions (``final_layers``, 1x1, giving
    # heatmaps and tags: a few per mille of the MACs): quantising them cost the quickstart model 0.017 val AP
    # instead of 0.010.
    ignored = nncf.IgnoredScope(
        names=ignored_names,
        types=["Interpolate"],
        patterns=[".*final_layers.*"],
        validate=False,
    )
    return nncf.quantize(
        model,
        nncf.Dataset(inputs),
        subset_size=len(inputs),
        ignored_scope=ignored,
    )


def _write_openvino(onnx_path: Path, path: Path, calibration: list[np.ndarray] | None) -> None:
    """ONNX file -> OpenVINO IR at ``path`` (``.xml`` + ``.bin``, fp32 weights), INT8 with ``calibration`` inputs;
    ``path`` is in the caller's temporary folder (:func:`_publish` moves it into place)."""
    try:
        import openvino as ov
    except ImportError as e:
        raise ImportError(f"OpenVINO export needs the package 'openvino': {INSTALL_HINT}") from e
    model = ov.convert_model(str(onnx_path))
    if calibration is not None:
        model = _quantize_openvino(model, calibration, decode_node_names(onnx_path))
    ov.save_model(model, str(path), compress_to_fp16=False)


#: ONNX op types that ``quantize_onnx`` quantises inside the network, per ``ops`` choice: ``"conv"`` the
#: convolutions only (additions, ReLU and the fusion upsampling in float between them: the accurate default);
#: ``"all"`` those too, so that activations stay 8-bit from one convolution to the next: ~1.05-1.15x faster on the
#: W32-512 graph (1.57-1.68x the torch bf16 fast path against 1.46-1.51x), and more sensitive to calibration images
#: unlike the data (the 4-image overfit model calibrated on other images lost 0.07 AP, conv only 0.002; calibrated on
#: its own images neither lost any) -- see the README.
INT8_OPS = {
    "conv": ("Conv", "ConvTranspose"),
    "all": ("Conv", "ConvTranspose", "Add", "Relu", "Resize"),
}


def network_node_names(onnx_path: str | os.PathLike) -> list[str]:
    """Names of the nodes of an exported ``DecodeGraph`` that belong to its network (``DecodeGraph.model``), not to
    the decode: TorchScript exports name them ``/model/...``, dynamo exports record the module scope
    (``pkg.torch.onnx.name_scopes`` metadata)."""
    return _split_node_names(onnx_path)[0]


def decode_node_names(onnx_path: str | os.PathLike) -> list[str]:
    """Names of the other nodes of an exported ``DecodeGraph``: flip, averaging, projection, NMS, top-k."""
    return _split_node_names(onnx_path)[1]


def _split_node_names(onnx_path: str | os.PathLike) -> tuple[list[str], list[str]]:
    import onnx

    network, decode = [], []
    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
        (network if node.name.startswith("/model/") or "'model'" in scopes else decode).append(node.name)
    return network, decode


def quantize_onnx(
    onnx_path: str | os.PathLike,
    path: str | os.PathLike,
    *,
    calibration: Sequence[str | os.PathLike],
    ops: str = "conv",
) -> dict[str, Path]:
    """An exported ONNX model (with its JSON) quantised to INT8 for ONNX Runtime: static post-training quantisation
    (``onnxruntime.quantization.quantize_static``, QDQ format, per-channel int8 weights, uint8 activations, MinMax
    calibration on ``calibration`` images resized like at test time). Quantised: the network's nodes only
    (``network_node_names``) of the types ``INT8_OPS[ops]`` -- ``"conv"``: the convolutions; ``"all"``: also the
    residual and fusion additions, ReLU and the fusion upsampling (faster, less accurate). ONNX Runtime has no
    integer ``ConvTranspose``: the deconvolution runs in float either way. The decode ops (flip averaging,
    projection, max-pool, top-k) stay in float.

    Returns:
        ``{"model", "metadata"}`` paths (written together: nothing is replaced when quantisation fails).

    Raises:
        bottomup.deploy.runtime.ModelFileError: a missing / foreign JSON, or ``onnx_path`` not the file it
        describes. ValueError: a path not ending in .onnx, no images, ``ops`` not in ``INT8_OPS``. ImportError:
        onnxruntime missing. OSError: the folder of ``path`` cannot be written.
    """
    onnx_path, path = Path(onnx_path), Path(path)
    if ops not in INT8_OPS:
        raise ValueError(f"INT8 ops must be one of {list(INT8_OPS)} (--int8-ops), got {ops!r}")
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: an ONNX file name must end in .onnx")
    meta = read_metadata(onnx_path)
    inputs = calibration_inputs(calibration, int(meta["input_size"]), udp=bool(meta.get("udp", False)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}-q-") as tmp:
        staged = Path(tmp) / path.name
        _quantize_onnx_file(onnx_path, staged, inputs, ops, meta["input_name"])
        meta = {**meta, "precision": "int8", "calibration_images": len(inputs), "int8_ops": ops}
        return _publish(staged, path, meta)


def _quantize_onnx_file(onnx_path: Path, out: Path, inputs: list[np.ndarray], ops: str, input_name: str) -> None:
    """``quantize_static`` of ``onnx_path`` (an exported ``DecodeGraph``) into ``out`` on the network inputs
    ``inputs`` (:func:`calibration_inputs`), its intermediate file beside ``out``."""
    try:
        from onnxruntime import quantization as ortq
    except ImportError as e:
        raise ImportError(f"ONNX Runtime INT8 needs the package 'onnxruntime': {INSTALL_HINT}") from e

    class _Reader(ortq.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.items, None)
            return None if x is None else {input_name: x}

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".pre-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        ortq.quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        ortq.quantize_static(
            str(pre),
            str(out),
            _Reader(),
            quant_format=ortq.QuantFormat.QDQ,
            op_types_to_quantize=list(INT8_OPS[ops]),
            nodes_to_quantize=network_node_names(str(onnx_path)),
            per_channel=True,
            activation_type=ortq.QuantType.QUInt8,
            weight_type=ortq.QuantType.QInt8,
            calibrate_method=ortq.CalibrationMethod.MinMax,
        )


def convert_to_openvino(
    onnx_path: str | os.PathLike,
    path: str | os.PathLike,
    *,
    int8: bool = False,
    calibration: Sequence[str | os.PathLike] = (),
) -> dict[str, Path]:
    """An exported ONNX model (with its JSON) as OpenVINO IR, optionally INT8, without exporting again.

    Args:
        onnx_path: ``*.onnx`` written by :func:`export_model`, its JSON beside it.
        path: the ``*.xml`` to write (``.bin`` and ``.json`` beside it).
        int8: quantise with NNCF on ``calibration`` images (resized like at test time).

    Returns:
        ``{"model", "weights", "metadata"}`` paths (written together: nothing is replaced when conversion fails).

    Raises:
        bottomup.deploy.runtime.ModelFileError: a missing / foreign JSON, or ``onnx_path`` not the file it
        describes. ValueError: a path not ending in .xml, INT8 without images. ImportError: openvino / nncf
        missing. OSError: the folder of ``path`` cannot be written.
    """
    onnx_path, path = Path(onnx_path), Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"{path}: an OpenVINO IR file name must end in .xml")
    meta = read_metadata(onnx_path)
    inputs = (
        calibration_inputs(calibration, int(meta["input_size"]), udp=bool(meta.get("udp", False))) if int8 else None
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        **meta,
        "precision": "int8" if int8 else meta.get("precision", "fp32"),
        "calibration_images": len(inputs or []),
    }
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}-ir-") as tmp:
        staged = Path(tmp) / path.name
        _write_openvino(onnx_path, staged, inputs)
        return _publish(staged, path, meta)


def export_model(
    predictor: Predictor,
    path: str | os.PathLike,
    *,
    format: str | None = None,
    exporter: str = "dynamo",
    int8: bool = False,
    calibration: Sequence[str | os.PathLike] = (),
    int8_ops: str | None = None,
    **extra: Any,
) -> dict[str, Path]:
    """Export ``predictor`` (network, layout, test settings) to ``path`` and write the JSON beside it.

    Args:
        predictor: e.g. ``bottomup.api.PoseEstimator.from_checkpoint(...)``; its fp32 network is exported (a
            ``fold_bn`` / bf16 copy is not: export the checkpoint without them).
        path: the model file: ``*.onnx`` or ``*.xml`` (OpenVINO IR, ``.bin`` beside it).
        format: ``"onnx"`` or ``"openvino"``; default from the suffix.
        exporter: ``"dynamo"`` (default) or ``"torchscript"`` (:data:`EXPORTERS`).
        int8: quantise with ``calibration`` images: NNCF for an OpenVINO IR, ``quantize_onnx`` for ONNX.
        calibration: image files for INT8 calibration.
        int8_ops: what ONNX Runtime INT8 quantises: ``"conv"`` (default) or ``"all"`` (``quantize_onnx``); only with
            ``int8`` and ONNX (NNCF picks its own ops).
        **extra: more JSON keys (``summary``, ``trained_on``, ``source``).

    Returns:
        ``{"model": path, "metadata": json path}`` (+ ``"weights"``: the ``.bin`` of an IR).

    Raises:
        ValueError: unknown format / exporter, a suffix that does not fit the format, several test scales, INT8
            without calibration images, ``int8_ops`` without ONNX INT8, a prepared (folded / low-precision) network.
        ImportError: openvino / nncf missing (the message names the ``deploy`` extra).
    """
    path = Path(path)
    if format is None:
        format = next((f for f, s in FORMATS.items() if s == path.suffix), None)
        if format is None:
            raise ValueError(f"{path}: give a .onnx or .xml (OpenVINO IR) file name, or format='onnx' / 'openvino'")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
    if path.suffix != FORMATS[format]:
        raise ValueError(f"{path}: a {format} model file must end in {FORMATS[format]}")
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {list(EXPORTERS)}, got {exporter!r}")
    if tuple(predictor.scales) != (1.0,):
        raise ValueError(
            f"the exported graph runs one scale (1.0); the test settings have scales {list(predictor.scales)} "
            "(export with --scales 1)"
        )
    if int8_ops is not None and not (int8 and format == "onnx"):
        raise ValueError("--int8-ops chooses what ONNX Runtime INT8 quantises: give it with --int8 and a .onnx file")
    if predictor.fold_bn or predictor.compile:
        raise ValueError("export the fp32 network: load the checkpoint without fold_bn / compile")
    model = predictor.model.float().cpu().eval()
    if predictor.channels_last:
        model = model.to(memory_format=torch.contiguous_format)
    codec = predictor.codec
    graph = DecodeGraph(
        model,
        num_keypoints=codec.num_keypoints,
        flip_index=codec.flip_index if predictor.flip_test else None,
        grouping=codec.grouping_settings,
        udp=predictor.settings.udp,
    ).eval()
    inputs = calibration_inputs(calibration, predictor.input_size, udp=predictor.settings.udp) if int8 else []
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = export_metadata(
        predictor,
        precision="int8" if int8 else "fp32",
        exporter=exporter,
        opset=EXPORTERS[exporter],
        calibration_images=len(inputs),
        **({"int8_ops": int8_ops or "conv"} if int8 and format == "onnx" else {}),
        **extra,
    )
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}-") as tmp:
        staged = Path(tmp) / path.name
        onnx_path = staged if format == "onnx" and not int8 else Path(tmp) / "graph" / "fp32.onnx"
        onnx_path.parent.mkdir(exist_ok=True)
        with torch.inference_mode(False), torch.no_grad():
            _export_onnx(graph, onnx_path, predictor.input_size, exporter)
        if format == "onnx" and int8:
            _quantize_onnx_file(onnx_path, staged, inputs, int8_ops or "conv", INPUT_NAME)
        elif format == "openvino":
            _write_openvino(onnx_path, staged, inputs if int8 else None)
        written = _publish(staged, path, meta)
    log.info("exported %s (%s, %s) and %s", path, format, meta["precision"], written["metadata"])
    return written

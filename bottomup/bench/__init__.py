"""One benchmark entry point for speed and memory: ``python -m bottomup.bench``.

The network of the model sections (``forward``, ``train``, ``e2e``, ``flops``, ``memory``, ``video``, ``backends``)
is HigherHRNet-W\\ ``--width`` with random weights, or with ``--experiment NAME`` that experiment's model (any
``conf/experiment``, e.g. ``vitpose_b_ae``; random weights, nothing pre-trained loaded). ``--experiment A,B`` runs the
selected sections for each network in turn (``data``, ``grouping``, ``grouping_reference`` and ``tracking``, which do
not depend on it, once), every row prefixed with its experiment's name: networks side by side in one run.

Sections (``--only`` picks a subset, comma separated; all but ``grouping_reference`` and ``video`` run by default):

* ``forward``: latency of one forward pass of the network on a ``(1, 3, S, S)`` input
  (``S = --size``), under ``torch.inference_mode()``, in eval mode, per precision (``fp32``; ``bf16`` autocast;
  ``fp16`` autocast on CUDA only), memory format (contiguous / channels_last) and, with ``--compile``,
  ``torch.compile`` (at least 3 warm-up calls after the compiling one); then the same for copies with BatchNorm
  folded and weights in the precision itself (``bottomup.models.fast.prepare_for_inference``, "folded").
  Unit: ms per forward.
* ``train``: throughput of a full training step (forward, ``bottomup.models.losses.AssociativeEmbeddingLoss`` on real
  targets of one coco-mini train batch, backward, ``Adam.step``) with batch ``--train-batch``, fp32 and bf16
  autocast (fp16 autocast + ``GradScaler`` on CUDA), as in ``bottomup.train``. The same batch is reused, so data
  loading is excluded (see ``data``). Unit: images/s (ms/step in the notes). Also each variant's loss curve
  against fp32 contiguous from equal weights (% max relative difference).
* ``data``: throughput of ``bottomup.data.KeypointDataset`` (training augmentation, input ``S``) on coco-mini
  train: first per core (``dataset[(i, epoch)]`` over the data set in this process, one torch and one OpenCV
  thread, process CPU time, one epoch per repeat after ``max(1, --warmup)`` untimed ones; ``info.per_core``),
  then through a ``DataLoader`` with ``bottomup.data.collate``, per worker count (``--workers``, default
  0, 1, 2). Each repeat starts a fresh loader; the first ``max(1, --warmup)`` batches (worker start-up) are not
  timed. Unit: samples/s.
* ``grouping``: CPU ms per image of ``bottomup.codec.grouping`` on ideal (round-trip) maps of the coco-mini val
  images (``bottomup.data.ideal_cases``; input 512 at scale 1, whatever ``--size``), with flip test off and on,
  split into NMS/top-k, tag matching and adjust+refine. The ideal maps are built untimed.
* ``grouping_reference`` (only when named in ``--only``): the same maps grouped by the fast implementation and
  by the slow loop reference ``bottomup.codec.reference.reference_group``, one call per image each: ms per image
  of both, total and per step, the speedup, and whether both give identical outputs (printed as
  ``identical outputs: True|False`` per flip setting; the exit status is 1 when they differ). Unit: ms/image, x.
* ``e2e``: ms per image of ``bottomup.api.PoseEstimator`` on coco-mini val image files (JPEG decode,
  resize, network, flip test off / on, aggregation, grouping, back-projection). The network has random
  weights unless ``--checkpoint`` is given; with random weights grouping finds no peaks and costs next to
  nothing, so the figure is then the network + pre/post-processing.
* ``flops``: the network's parameters (M) and multiply-adds of one forward (``torch.utils.flop_counter.FlopCounterMode``
  with a formula for the CPU attention kernel it lacks, cross-checked with a per-layer analytic count of every
  Conv2d / ConvTranspose2d / Linear and ViT attention), a dense square matmul probe (``--probe-size``)
  per precision giving the machine's attainable GFLOP/s, and the forward's achieved GFLOP/s
  (``2 * MACs / time``, from the ``forward`` section's fastest non-compiled variant of that precision, or timed
  here) with its percentage of the probe.
* ``backends`` (only when named): torch fp32, the torch bf16 fast path, ONNX Runtime fp32, OpenVINO fp32 and
  OpenVINO INT8 (NNCF) and ONNX Runtime INT8 (``--calib-images`` coco-mini train images) on the same val images, flip test on: ms per
  image of the network part (what the exported graph holds) and end to end with grouping
  (:mod:`bottomup.bench.backends`; ``--checkpoint`` gives real weights). Unit: ms/image.
* ``summary`` (only when named): the machine summary for the README's Benchmarks table
  (:mod:`bottomup.bench.summary`): the matmul probe per precision, the forward per test-time path (fp32 / bf16 x
  contiguous / channels_last / channels_last + BN folded) with its speed-up over official fp32 (the official code's
  forward: fp32, contiguous, BatchNorm unfolded) timed round-robin in the same run, what ``test.precision=auto`` and
  ``trainer.precision=auto`` pick, training images/s of the quickstart network and of W``--width`` at ``--size``, and
  with ``backends`` in the same run the INT8 figures. A compact block ``machine summary`` follows the table.
* ``memory``: peak memory of one inference forward (batch 1) and of one training step (batch
  ``--train-batch``) per precision. CPU: peak resident set size of this process (``VmHWM``, reset before each
  measurement through ``/proc/self/clear_refs``, after ``gc.collect()`` and glibc ``malloc_trim`` so that
  memory freed by earlier sections does not count; the RSS just before is in the note); where that is not possible, ``resource.getrusage`` max RSS,
  which cannot be reset and is then a process-lifetime maximum). CUDA: ``torch.cuda.max_memory_allocated``.
  Unit: MiB.
* ``video`` (only when named in ``--only``): a 2,000-frame generated 320 x 240 stream of walking figures
  (``bottomup.data.synthetic_video``) through ``PoseEstimator.track`` as ``python -m bottomup.infer`` runs a video
  (estimate, track, a JSON line, a rendered MP4 frame), with the ``--checkpoint``'s model or the quickstart network
  with random weights: resident memory at frames 1, 500, 1000, 1500, 2000 (flat: nothing accumulates), frames/s
  end to end and ``PoseTracker.update`` ms per frame; then frames/s of the network at ``--size`` on
  640 x 480 frames, fp32 and per other precision the BN-folded channels_last copy, flip test off / on.

Every measurement is taken ``--repeats`` times after ``--warmup`` untimed runs and reported as min / median / max,
as a table on stdout and, with ``--json PATH``, as JSON. On CUDA every timing is bracketed by
``torch.cuda.synchronize()`` and ``cudnn.benchmark`` is on. ``--quick`` is a smoke test for CI (small input,
one repeat, a few images); its numbers mean nothing.

Modules: ``common`` (results, settings, machine, timing, model and inputs, table), one per section (``forward``,
``train``, ``data``, ``grouping`` with ``grouping_reference``, ``e2e``, ``flops``, ``memory``, ``video``, ``backends``, ``summary``), ``cli`` (options and
the dispatch table :data:`SECTIONS`).

Examples::

    python -m bottomup.bench                              # everything, CPU or CUDA (auto)
    python -m bottomup.bench --only forward,flops --size 640 --width 48 --repeats 10
    python -m bottomup.bench --device cuda --compile --json bench.json
    python -m bottomup.bench --only grouping_reference    # fast grouping vs the reference, all val images
    python -m bottomup.bench --quick --json /tmp/bench.json
    python -m bottomup.bench --only backends --width 32 --size 512 --threads 2   # torch / ORT / OpenVINO / INT8
    python -m bottomup.bench --only forward,flops --experiment vitpose_b_ae,higherhrnet_w32   # side by side
    python -m bottomup.bench --only backends,summary --threads 2   # the machine summary of the README, with INT8
"""

from __future__ import annotations

from bottomup.bench.backends import bench_backends
from bottomup.bench.cli import DEFAULT_SECTIONS, SECTIONS, main
from bottomup.bench.common import Result, Settings, format_table, machine_info, time_fn
from bottomup.bench.data import bench_data
from bottomup.bench.e2e import bench_e2e
from bottomup.bench.flops import bench_flops, count_macs, matmul_probe
from bottomup.bench.forward import bench_forward
from bottomup.bench.grouping import bench_grouping, bench_grouping_reference
from bottomup.bench.memory import bench_memory
from bottomup.bench.summary import bench_summary
from bottomup.bench.train import bench_train

__all__ = [
    "SECTIONS",
    "DEFAULT_SECTIONS",
    "Result",
    "Settings",
    "machine_info",
    "time_fn",
    "count_macs",
    "matmul_probe",
    "bench_forward",
    "bench_train",
    "bench_data",
    "bench_grouping",
    "bench_grouping_reference",
    "bench_e2e",
    "bench_flops",
    "bench_memory",
    "bench_backends",
    "bench_summary",
    "format_table",
    "main",
]

"""A project checkpoint that finds people on the benchmark's e2e images, so that ``bench --only e2e`` times grouping.

With random weights no heatmap passes the detection threshold and the e2e benchmark times the network and the
pre/post-processing only. This memorises the people of the first ``--images`` coco-mini val images (sorted by file
name: ``bottomup.bench.common.val_images``, the e2e images) and of their mirror images, at the test scale of ``--size``
(training input = the centre square of the short side resized to ``--size``, as the test resizes the short side to
``--size``), then saves ``{"model", "config", "epoch", "step"}`` (``bottomup.build.load_model`` rebuilds it from
``config``).

Used by tests/gpu/run.sh (CUDA, W32-512); ``--device cpu --size 128 --width 8 --steps 2`` is a smoke test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bottomup.api import PoseEstimator
from bottomup.bench.common import val_images
from bottomup.build import build_model, build_optimizer, build_train_dataset, compose
from bottomup.data import AugmentParams, collate
from bottomup.engine.checkpoint import save_checkpoint
from bottomup.engine.trainer import _to_device
from bottomup.models.losses import AssociativeEmbeddingLoss


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, required=True, help="coco-mini folder")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    t0 = time.perf_counter()
    device = torch.device(args.device)
    names = {f.name for f in val_images(args.data_root)[: args.images]}
    src = json.loads((args.data_root / "annotations" / "person_keypoints_val2017.json").read_text())
    images = [im for im in src["images"] if im["file_name"] in names]
    ids = {im["id"] for im in images}
    subset = {**src, "images": images, "annotations": [a for a in src["annotations"] if a["image_id"] in ids]}
    ann = Path(tempfile.mkdtemp(prefix="e2e_ckpt_")) / "e2e_val.json"
    ann.write_text(json.dumps(subset))
    overrides = ["experiment=higherhrnet_w32", f"data.root={args.data_root}", f"model.width={args.width}",
                 f"data.input_size={args.size}", f"output_dir={args.out.parent}"]  # fmt: skip
    cfg = compose("train", overrides)
    train_cfg = compose("train", [*overrides, f"data.train_ann={ann}", f"data.train_images={args.data_root}/val2017"])
    dataset = build_train_dataset(train_cfg.data, cfg.model.strides, train=False)
    views = [AugmentParams(flip=flip) for flip in (False, True)]  # the e2e benchmark runs flip test on and off
    samples = [dataset.sample(i, view) for view in views for i in range(len(dataset))]
    batch = _to_device(collate(samples), device, channels_last=True)
    torch.manual_seed(0)
    model = build_model(cfg.model, 17, pretrained=False).to(device).to(memory_format=torch.channels_last).train()
    criterion = AssociativeEmbeddingLoss(17, push_type="max", pull_weight=0.01, push_weight=0.01)
    optim_cfg = compose("train", ["optim.lr=1e-4", "schedule.warmup_iters=10", f"schedule.milestones=[{args.steps}]"])
    optimizer, scheduler = build_optimizer(optim_cfg.optim, optim_cfg.schedule, model, iters_per_epoch=1)
    first = last = float("nan")
    for step in range(args.steps):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            outputs = model(batch["image"])
        loss = criterion([o.float() for o in outputs], batch["heatmaps"], batch["masks"], batch["tag_indices"])["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step == 0:
            first = loss.item()
    last = loss.item()
    model = model.to(memory_format=torch.contiguous_format).eval()
    save_checkpoint(
        {"model": {k: v.cpu() for k, v in model.state_dict().items()}, "config": OmegaConf.to_yaml(cfg, resolve=True),
         "epoch": 0, "step": args.steps},
        args.out,
    )  # fmt: skip
    est = PoseEstimator.from_checkpoint(args.out, device=device, input_size=args.size)
    people = [int((est(args.data_root / "val2017" / im["file_name"]).scores >= 0.2).sum()) for im in images]
    annotated = [
        sum(a["image_id"] == im["id"] and a["num_keypoints"] > 0 for a in subset["annotations"]) for im in images
    ]
    print(f"memorised {len(dataset)} of {len(images)} e2e images ({sum(annotated)} annotated people) in {args.steps} "
          f"steps, loss {first:.3e} -> {last:.3e}; people with score >= 0.2 per image: {people} (annotated "
          f"{annotated}); wrote {args.out} in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

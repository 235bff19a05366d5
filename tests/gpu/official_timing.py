"""Time the official HigherHRNet-W32-512 next to this project's network, in one process, with one protocol.

The official code is not part of this repository: pass the folder of a checkout of
github.com/HRNet/HigherHRNet-Human-Pose-Estimation (``--official``, default ``.official/HigherHRNet``, ignored by
git). Its ``lib/`` is put on ``sys.path``; the network is ``models.pose_higher_hrnet.get_pose_net(cfg,
is_train=False)`` with the yacs config ``experiments/coco/higher_hrnet/w32_512_adam_lr1e-3.yaml`` (and the official
normal(0.001) initialisation), the loss its ``core.loss.MultiLossFactory``.

Measured, each ``--repeats`` times after ``--warmup`` untimed runs, CUDA synchronised around every call:

* forward (eval, ``torch.inference_mode``) at batch 1 and ``--batch``, fp32 and AMP (fp16 autocast);
* one training step at ``--batch``: forward, loss, backward, Adam (fp32; AMP = fp16 autocast + GradScaler), for
  the official network with the official loss, the official network with this project's loss, and this project's
  network with its loss; with the peak GPU memory of the step.

The batch is one augmented coco-mini train batch built by this project's data set (the targets of both losses
have the same layout: heatmaps per resolution, masks, ``(B, M, K, 2)`` joint indices). Writes ``--json`` and a bar
chart ``--plot``. Run by tests/gpu/run.sh; ``--device cpu --size 128 --batch 2`` is a smoke test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _official(folder: Path, device: torch.device):
    lib = folder / "lib"
    if not (lib / "models" / "pose_higher_hrnet.py").is_file():
        raise SystemExit(f"error: {lib}/models/pose_higher_hrnet.py not found: is {folder} a HigherHRNet checkout?")
    sys.path.insert(0, str(lib))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # `is '*'` in pose_higher_hrnet.py
        import models.pose_higher_hrnet as official_net
        from config import cfg
    # lib/core has no __init__.py: load the file itself, so that no other top-level ``core`` package can win
    spec = importlib.util.spec_from_file_location("official_core_loss", lib / "core" / "loss.py")
    official_loss = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(official_loss)

    cfg.defrost()
    cfg.merge_from_file(str(folder / "experiments" / "coco" / "higher_hrnet" / "w32_512_adam_lr1e-3.yaml"))
    cfg.freeze()
    if device.type != "cuda":  # the official AE loss puts its zero losses on CUDA unconditionally
        official_loss.make_input = lambda t, requires_grad=False, need_cuda=True: t.sum()
    torch.manual_seed(0)
    model = official_net.get_pose_net(cfg, is_train=False)
    model.init_weights(pretrained="", verbose=False)  # the official normal(0.001) init, no ImageNet file
    return model, official_loss.MultiLossFactory(cfg), cfg


def _batch(data_root: Path, size: int, n: int, device: torch.device) -> dict:
    from bottomup.build import build_train_dataset, compose
    from bottomup.data import collate

    cfg = compose("train", ["experiment=higherhrnet_w32", f"data.root={data_root}", f"data.input_size={size}"])
    dataset = build_train_dataset(cfg.data, cfg.model.strides, train=True, seed=0)
    b = collate([dataset[(i % len(dataset), 0)] for i in range(n)])
    return {
        "image": b["image"].to(device),
        "heatmaps": [h.to(device) for h in b["heatmaps"]],
        "masks": [m.to(device) for m in b["masks"]],
        "tag_indices": b["tag_indices"].to(device),
    }


def _ours(size: int):
    from bottomup.build import build_loss, build_model, compose

    cfg = compose("train", ["experiment=higherhrnet_w32", f"data.input_size={size}"])
    torch.manual_seed(0)
    return build_model(cfg.model, 17, pretrained=False), build_loss(cfg.loss)


def _official_loss_fn(factory):
    def loss(outputs, batch):
        joints = [batch["tag_indices"]] * len(outputs)
        hm, push, pull = factory(outputs, batch["heatmaps"], batch["masks"], joints)
        total = 0
        for parts in (hm, push, pull):  # official do_train: each term averaged over the batch
            for p in parts:
                if p is not None:
                    total = total + p.mean(dim=0)
        return total

    return loss


def _our_loss_fn(criterion):
    return lambda outputs, batch: criterion(outputs, batch["heatmaps"], batch["masks"], batch["tag_indices"])["loss"]


def _train_step(model, loss_fn, batch, precision: str, device: torch.device):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # official TRAIN.LR, OPTIMIZER adam
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "amp")

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=precision == "amp"):
            outputs = model(batch["image"])
        loss = loss_fn([o.float() for o in outputs], batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def _forward(model, x, precision: str, device: torch.device):
    def fwd() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=precision == "amp"):
            model(x)

    return fwd


def _measure(fn, args, device: torch.device) -> tuple[list[float], float | None]:
    from bottomup.bench.common import time_fn

    for _ in range(args.warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = time_fn(fn, 0, args.repeats, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return [t * 1e3 for t in times], peak


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['what']} b{r['batch']}\n{r['network']} {r['precision']}" for r in results]
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(results)), 4.5))
    colors = ["tab:orange" if r["network"].startswith("official") else "tab:blue" for r in results]
    ax.bar(range(len(results)), [r["median_ms"] for r in results], color=colors)
    ax.set_xticks(range(len(results)), labels, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("ms (median)")
    ax.set_yscale("log")
    ax.set_title("HigherHRNet-W32: official (orange) vs bottomup (blue)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", type=Path, default=REPO / ".official" / "HigherHRNet")
    p.add_argument("--data-root", type=Path, required=True, help="coco-mini folder")
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # official CUDNN.BENCHMARK
    t0 = time.perf_counter()
    official, factory, _ = _official(args.official, device)
    ours, criterion = _ours(args.size)
    nets = {"official": official.to(device), "bottomup": ours.to(device)}
    params = {k: sum(q.numel() for q in m.parameters()) for k, m in nets.items()}
    print(f"parameters: official {params['official'] / 1e6:.2f} M, bottomup {params['bottomup'] / 1e6:.2f} M")
    batch = _batch(args.data_root, args.size, args.batch, device)
    precisions = ["fp32", "amp"]
    results = []

    def add(network: str, what: str, precision: str, n: int, fn) -> None:
        ms, peak = _measure(fn, args, device)
        med = statistics.median(ms)
        results.append({"network": network, "what": what, "precision": precision, "batch": n, "ms": ms,
                        "median_ms": med, "images_per_s": n / med * 1e3, "peak_mib": peak})  # fmt: skip
        mem = f", peak {peak:.0f} MiB" if peak is not None else ""
        print(f"{network:<24} {what:<11} {precision:<4} batch {n:>2}: median {med:8.2f} ms, "
              f"{n / med * 1e3:7.1f} images/s{mem}", flush=True)  # fmt: skip

    for name, net in nets.items():
        net.eval()
        for precision in precisions:
            for n in (1, args.batch):
                add(name, "forward", precision, n, _forward(net, batch["image"][:n], precision, device))
    for name, net, loss_fn in (
        ("official", official, _official_loss_fn(factory)),
        ("official+bottomup-loss", official, _our_loss_fn(criterion)),
        ("bottomup", ours, _our_loss_fn(criterion)),
    ):
        for precision in precisions:
            state = {k: v.clone() for k, v in net.state_dict().items()}
            net.train()
            add(name, "train step", precision, args.batch, _train_step(net, loss_fn, batch, precision, device))
            net.load_state_dict(state)  # every variant starts from the same weights
    info = {"device": str(device), "torch": torch.__version__, "size": args.size, "batch": args.batch,
            "warmup": args.warmup, "repeats": args.repeats, "parameters": params, "official": str(args.official),
            "wall_s": time.perf_counter() - t0}  # fmt: skip
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"info": info, "results": results}, indent=2))
        print(f"wrote {args.json}")
    if args.plot:
        _plot(results, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pretrained models by name: ``python -m bottomup.zoo [--download NAME ...] [--where NAME]``.

Examples::

    python -m bottomup.zoo                                        # the table: name, published AP, input, size, cached
    python -m bottomup.zoo --download higherhrnet_w32_coco_512    # into the cache now (later runs need no network)
    python -m bottomup.zoo --where swahr_w32_coco_512             # where the file goes and where to get it

The table (``bottomup.models.zoo.ZOO``) gives each name's published AP (the publisher's figure, single-scale test
with flip; multi-scale in brackets; not reproduced here) on its benchmark, the input size, the file's size (the
cached file's, else ~ the published parameter count's) and whether it is in the cache
(``$BOTTOMUP_CACHE/weights``, default ``~/.cache/bottomup/weights``). A name works wherever weights are taken:
``python -m bottomup.infer IMG --weights NAME``, ``python -m bottomup.evaluate weights=NAME data.root=DIR``,
``python -m bottomup.train checkpoint=NAME ...`` (fine-tuning), ``model.pretrained=NAME`` (backbones),
``python -m bottomup.export --weights NAME``, ``PoseEstimator.from_pretrained(NAME)``.
``BOTTOMUP_WEIGHTS_MIRROR`` replaces the base URL (https://download.openmmlab.com/mmpose/), ``BOTTOMUP_OFFLINE=1``
never downloads.

Exit status: 0 done; 1 a download failed (the message names the URL, the expected checksum and the path to put the
file in by hand); 2 an unknown name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]

_COLUMNS = (("name", "name"), ("ap", "published AP"), ("benchmark", "on"), ("input", "input"), ("size", "size"),
            ("cached", "cached"), ("download", "download"))  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bottomup.zoo",
        description="List the pretrained models by name; download them into the cache; say where a file goes.",
        epilog="Exit status: 0 done, 1 a download failed, 2 an unknown name.",
    )
    p.add_argument("--download", nargs="+", metavar="NAME", help="fetch these into the cache now (verified)")
    p.add_argument("--where", metavar="NAME", help="the cache path, URL, checksum and source of one name")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while downloading")
    return p


def _table() -> str:
    from bottomup.core.download import weights_cache
    from bottomup.models.zoo import ENV_MIRROR, MAE_BASE, describe_entries, mirror_base

    rows = describe_entries()
    widths = {key: max(len(title), *(len(r[key]) for r in rows)) for key, title in _COLUMNS}
    lines = ["  ".join(title.ljust(widths[key]) for key, title in _COLUMNS).rstrip()]
    lines += ["  ".join(r[key].ljust(widths[key]) for key, _ in _COLUMNS).rstrip() for r in rows]
    lines.append(
        f"\nAPs are the publishers' figures (single scale with flip; multi-scale in brackets), not reproduced here. "
        f"Cache: {weights_cache()}; base URL: {mirror_base()}, MAE backbones: {mirror_base(None, MAE_BASE)} "
        f"(${ENV_MIRROR} replaces both)."
    )
    return "\n".join(lines)


def _where(name: str) -> str:
    from bottomup.core.download import describe_checksum
    from bottomup.models.zoo import get_entry

    entry = get_entry(name)
    lines = [
        f"{entry.name}: {entry.summary()}",
        f"  file: {entry.cache_path()} ({'cached' if entry.is_cached() else 'not cached'})",
        f"  URL: {entry.url() or 'no direct download'}",
        f"  checksum: {describe_checksum(entry.sha256, entry.sha256_prefix)}",
        f"  network: experiment={entry.experiment}" if entry.experiment else "  use: model.pretrained=" + entry.name,
        f"  source: {entry.source}",
        f"  licence: {entry.licence}",
    ]
    if entry.get and not entry.url_path:
        lines.append(f"  get it from {entry.get}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (see the module docstring)."""
    args = _parser().parse_args(argv)
    from bottomup.core.download import DownloadError
    from bottomup.models.zoo import UnknownWeightsError, fetch_weights

    try:
        if args.where:
            print(_where(args.where))
        for name in args.download or ():
            print(f"{name}: {fetch_weights(name, progress=not args.no_progress)}")
        if not (args.where or args.download):
            print(_table())
    except UnknownWeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pretrained models by name (``bottomup.models.zoo``) where configs and files meet: a name given for a checkpoint,
for ``weights=`` / ``--weights`` or for ``model.pretrained`` becomes the verified file in the cache, the experiment
that builds its network, and the test-time settings it was published with."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bottomup.engine.settings import TestSettings
from bottomup.models.zoo import ZooEntry, fetch_weights, get_entry, is_zoo_name

log = logging.getLogger("bottomup.build")

__all__ = ["pretrained_weights", "resolve_weights", "zoo_test_overrides", "zoo_command_overrides"]


def zoo_test_overrides(entry: ZooEntry) -> dict[str, Any]:
    """The test-time settings an entry was published with, beyond its experiment's: ``{"udp": True}`` for a UDP
    model where this version's :class:`~bottomup.engine.settings.TestSettings` has a ``udp`` field (none
    otherwise: the model then runs with the standard decode)."""
    fields = {f.name for f in dataclasses.fields(TestSettings)}
    if entry.udp and "udp" not in fields:
        log.warning("%s was trained with UDP; this version has no test.udp setting: it runs without it", entry.name)
    return {"udp": True} if entry.udp and "udp" in fields else {}


def pretrained_weights(
    name: str, *, mirror: str | None = None, offline: bool | None = None, progress: bool = True
) -> tuple[Path, ZooEntry]:
    """The verified file of the whole-network zoo entry ``name`` (downloaded into the cache first when needed) and
    the entry (its ``experiment`` builds the network; :func:`zoo_test_overrides` its test settings).

    Raises:
        bottomup.models.zoo.UnknownWeightsError / ValueError: no such name, or a backbone name.
        bottomup.core.download.DownloadError: not in the cache and not downloadable now (the message names the
            URL, the expected checksum and the path to put the file in by hand).
    """
    entry = get_entry(name, kind="pose")
    path = fetch_weights(entry, mirror=mirror, offline=offline, progress=progress)
    log.info("pretrained model %s: %s (%s layout, experiment %s)", name, path, entry.layout, entry.experiment)
    return path, entry


def _looks_like_name(value: str) -> bool:
    """A value with no path separator and no file suffix (``higherhrnet_w32_coco_512``, not ``best.pt``)."""
    return os.sep not in value and "/" not in value and not Path(value).suffix


def resolve_weights(value: str | os.PathLike[str], *, key: str, kind: str = "pose") -> str:
    """``value`` as a file path: a zoo name becomes its verified file in the cache (downloaded when needed); an
    existing file, or anything that looks like a path, is returned unchanged (the loader reports a missing file).

    Args:
        value: a path, or a name in ``bottomup.models.zoo.ZOO``.
        key: the config key it came from (``checkpoint``, ``model.pretrained``), for the messages.
        kind: ``"pose"`` (a whole network) or ``"backbone"`` (``model.pretrained``).

    Raises:
        ValueError: a name-like value that is neither a file nor a zoo name (the message names ``key`` and the
            closest names), or a name of the other kind.
        bottomup.core.download.DownloadError: as :func:`pretrained_weights`.
    """
    text = os.fspath(value)
    if Path(text).exists():
        return text
    if is_zoo_name(text):
        entry = get_entry(text, kind)
        path = fetch_weights(entry)
        log.info("%s=%s: %s", key, text, path)
        if entry.udp:
            log.info("%s was trained and tested with UDP (data.udp / test.udp where this version has them)", text)
        return str(path)
    if _looks_like_name(text):
        try:
            get_entry(text, kind)
        except ValueError as e:
            raise ValueError(f"{key}={text}: no such file, and {e}") from None
    return text


def _given(args: Sequence[str], key: str) -> str | None:
    """The value of ``key=...`` (also ``+key=`` / ``++key=``) in Hydra command-line overrides, else ``None``."""
    for arg in args:
        name, sep, value = arg.partition("=")
        if sep and name.lstrip("+") == key:
            return value.strip("'\"")  # Hydra's quoting: weights='name'
    return None


def zoo_command_overrides(args: Sequence[str], key: str) -> list[str]:
    """Hydra overrides to add for a zoo name given on the command line as ``key=NAME`` (``weights`` for
    ``python -m bottomup.evaluate``, ``checkpoint`` for ``python -m bottomup.train``): ``experiment=<the entry's>``
    when no experiment is given (the network and data set of the weights; another experiment given is kept) and
    ``test.udp=true`` for a UDP model where ``test.udp`` is a setting and not given (and, for fine-tuning,
    ``data.udp=true``: the UDP targets the network was trained on). Nothing for a path or an unknown name (the run
    then reports it)."""
    value = _given(args, key)
    if value is None or not is_zoo_name(value) or Path(value).exists():
        return []
    entry = get_entry(value)
    extra = []
    if entry.experiment and _given(args, "experiment") is None:
        extra.append(f"experiment={entry.experiment}")
    if zoo_test_overrides(entry).get("udp") and _given(args, "test.udp") is None:
        extra.append("test.udp=true")
        if key == "checkpoint" and _given(args, "data.udp") is None:
            extra.append("data.udp=true")  # fine-tuning: the UDP targets the network was trained on
    return extra

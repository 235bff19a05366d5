"""Files fetched by URL into a cache, safely: checksum verified before use, written atomically, offline mode.

:func:`fetch` is the one path (the pretrained-model zoo, ``bottomup.models.zoo``, calls it): a file already in the
cache is verified and used; otherwise it is downloaded (pooch's HTTP downloader, with a tqdm progress bar) into a
temporary file beside its final place, verified against the expected SHA-256 (or the 8-hex-digit prefix that
MMPose / torch.hub file names carry), and only then renamed into place (``os.replace``). An interrupted transfer or
a wrong checksum leaves no file where a later call would find it. When the file cannot be fetched (offline, no
network, HTTP error, checksum mismatch), :class:`DownloadError` says in one message the URL, the expected checksum
and the exact path to put the file in by hand.

Environment:

* ``BOTTOMUP_CACHE``: the cache root (default ``~/.cache/bottomup``); weights go to ``$BOTTOMUP_CACHE/weights``.
* ``BOTTOMUP_OFFLINE=1``: never download (a file already in the cache is still used).

Nothing here touches the network at import: pooch (and requests) are imported when a download starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

__all__ = [
    "ENV_CACHE",
    "ENV_OFFLINE",
    "DownloadError",
    "cache_root",
    "weights_cache",
    "offline_mode",
    "file_sha256",
    "checksum_problem",
    "describe_checksum",
    "fetch",
]

#: Environment variable naming the cache root (default ``~/.cache/bottomup``).
ENV_CACHE = "BOTTOMUP_CACHE"
#: Environment variable that turns downloads off (``1``, ``true``, ``yes``, ``on``).
ENV_OFFLINE = "BOTTOMUP_OFFLINE"

_TRUE = ("1", "true", "yes", "on")


class DownloadError(RuntimeError):
    """A file that could not be fetched or verified; the message names the URL, the expected checksum and the
    path to put the file in by hand. Nothing was left at that path.

    Attributes:
        url: where it was to come from (``None`` when there is no direct download).
        path: where the file belongs in the cache.
    """

    def __init__(self, message: str, *, url: str | None = None, path: Path | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.path = path


def cache_root() -> Path:
    """The cache root: ``$BOTTOMUP_CACHE``, else ``~/.cache/bottomup`` (not created here)."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bottomup"


def weights_cache() -> Path:
    """Where downloaded weights are kept: ``<cache root>/weights`` (not created here)."""
    return cache_root() / "weights"


def offline_mode(offline: bool | None = None) -> bool:
    """``offline`` when given, else whether ``$BOTTOMUP_OFFLINE`` is set to ``1`` / ``true`` / ``yes`` / ``on``."""
    if offline is not None:
        return bool(offline)
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in _TRUE


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file, lowercase hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_checksum(sha256: str | None, sha256_prefix: str | None) -> str:
    """``"SHA-256 <hex>"``, ``"SHA-256 starting with <prefix>"`` or ``"no published checksum"``, for messages."""
    if sha256:
        return f"SHA-256 {sha256.lower()}"
    if sha256_prefix:
        return f"SHA-256 starting with {sha256_prefix.lower()}"
    return "no published checksum"


def checksum_problem(path: str | os.PathLike[str], sha256: str | None, sha256_prefix: str | None) -> str | None:
    """Why the file at ``path`` fails the expected checksum (``"its SHA-256 is ..., expected ..."``), or ``None``
    when it passes (or nothing is expected)."""
    if not sha256 and not sha256_prefix:
        return None
    actual = file_sha256(path)
    expected = (sha256 or sha256_prefix or "").lower()
    if (sha256 and actual != expected) or (not sha256 and not actual.startswith(expected)):
        return f"its SHA-256 is {actual}, expected {describe_checksum(sha256, sha256_prefix)[len('SHA-256 ') :]}"
    return None


def _manual(url: str | None, dest: Path, sha256: str | None, sha256_prefix: str | None) -> str:
    """The lines every failure ends with: URL, checksum and the path to put the file in."""
    source = f"URL: {url}" if url else "no direct download"
    return f"\n  {source}\n  expected: {describe_checksum(sha256, sha256_prefix)}\n  put the file here by hand: {dest}"


def _local_source(url: str) -> Path | None:
    """The local file a ``file://`` URL or a plain path names (a mirror on a shared disk), else ``None``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):  # C:\... on Windows
        return Path(url)
    return None


def _transfer(url: str, tmp: Path, progress: bool, timeout: float) -> None:
    """Copy ``url`` into ``tmp``: a local file with shutil, http(s) with pooch's downloader (tqdm progress bar)."""
    local = _local_source(url)
    if local is not None:
        if not local.is_file():
            raise FileNotFoundError(f"no such file {local}")
        shutil.copyfile(local, tmp)
        return
    import pooch  # here, not at import: nothing touches the network unless a file is asked for

    pooch.HTTPDownloader(progressbar=progress, chunk_size=1 << 16, timeout=timeout)(url, str(tmp), None)


def _remove_stale_parts(dest: Path, age_s: float = 86400.0) -> None:
    """Delete the temporary files a killed download of ``dest`` left (``.<name>.*.part``, unchanged for a day: a
    download under way elsewhere writes into its own and keeps it fresh)."""
    now = time.time()
    for part in dest.parent.glob(f".{dest.name}.*.part"):
        with contextlib.suppress(OSError):
            if now - part.stat().st_mtime > age_s:
                part.unlink()


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def fetch(
    url: str | None,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    offline: bool | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    what: str = "file",
) -> Path:
    """The verified file at ``dest``, downloaded from ``url`` first when it is not there.

    A file already at ``dest`` is checked against ``sha256`` (or ``sha256_prefix``) and used without the network.
    Otherwise (unless offline) ``url`` is downloaded into a temporary file in ``dest``'s folder, verified, and
    renamed to ``dest``; on any failure the temporary file is removed, so ``dest`` only ever holds a whole,
    verified file.

    Args:
        url: ``http(s)://`` (pooch), ``file://`` or a local path (a mirror folder); ``None``: the file cannot be
            downloaded, only placed by hand.
        dest: the file's place in the cache (its folder is created).
        sha256: the full expected SHA-256 (hex); takes precedence over ``sha256_prefix``.
        sha256_prefix: the first hex digits of the expected SHA-256 (MMPose's file names carry 8).
        offline: never download; default ``$BOTTOMUP_OFFLINE`` (:func:`offline_mode`).
        progress: show a tqdm progress bar while downloading.
        timeout: seconds to wait for the server (connection and each read).
        what: the file's name for messages (e.g. the zoo name).

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DownloadError: the file is not there and offline mode is on or there is no ``url``; the download failed
            (network, HTTP status, interrupted transfer); the downloaded file or the one at ``dest`` fails the
            checksum. The message names the URL, the expected checksum and ``dest`` (to put the file in by hand).
    """
    dest = Path(dest).expanduser()
    manual = _manual(url, dest, sha256, sha256_prefix)
    if dest.is_file():
        problem = checksum_problem(dest, sha256, sha256_prefix)
        if problem is None:
            return dest
        raise DownloadError(
            f"{what}: the file in the cache is not the published one ({problem}); it is not used. Delete it "
            f"(it is then downloaded again) or replace it with the right file.{manual}",
            url=url,
            path=dest,
        )
    if url is None:
        raise DownloadError(f"{what} has no direct download; get the file and put it in the cache.{manual}", path=dest)
    if offline_mode(offline):
        raise DownloadError(
            f"{what} is not in the cache and offline mode is on ({ENV_OFFLINE}=1): nothing is downloaded.{manual}",
            url=url,
            path=dest,
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(dest)
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
    except OSError as e:
        raise DownloadError(
            f"{what}: cannot write into {dest.parent} ({_reason(e)}).{manual}", url=url, path=dest
        ) from e
    tmp = Path(name)
    try:
        try:
            _transfer(url, tmp, progress, timeout)
        except Exception as e:  # noqa: BLE001 - network, HTTP, interrupted transfer: one message with the way out
            raise DownloadError(f"{what}: download failed ({_reason(e)}); nothing was kept.{manual}", url=url,
                                path=dest) from e  # fmt: skip
        problem = checksum_problem(tmp, sha256, sha256_prefix)
        if problem is not None:
            raise DownloadError(
                f"{what}: the downloaded file is not the published one ({problem}); it was not kept.{manual}",
                url=url,
                path=dest,
            )
        with open(tmp, "rb+") as f:  # on disk before it takes the final name
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest

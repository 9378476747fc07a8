"""Download a dataset file once, verify its digest, and never leave a half-written file behind.

The file is streamed (urllib: ``http``, ``https``, ``file`` URLs) into a temporary file next to the
destination while its digest is computed; only when the digest matches the published one is the
temporary file renamed onto the destination (``os.replace``, atomic on one file system). Any failure
(offline, HTTP error, timeout, wrong digest, interrupted run) removes the temporary file and raises
:class:`vitlab.errors.DataError` with the URL, the reason, and where to put the file by hand.

SHA-256 is preferred; where a dataset publishes only MD5 (MNIST's mirrors, Fashion-MNIST, KMNIST and
CIFAR publish MD5 sums), the MD5 is checked instead: it still catches truncated and corrupted
downloads, which is what the check is for.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from vitlab.errors import DataError
from vitlab.io import atomic_open, file_digest

__all__ = ["download", "download_first", "verify_file"]

_CHUNK = 1 << 20
_SCHEMES = ("http://", "https://", "file://")


def verify_file(path: str | os.PathLike[str], sha256: str | None = None, md5: str | None = None) -> bool:
    """Whether ``path`` exists and matches every digest given (True when none is given and it exists)."""
    path = Path(path)
    if not path.is_file():
        return False
    if sha256 is not None and file_digest(path, "sha256") != sha256.lower():
        return False
    if md5 is not None and file_digest(path, "md5") != md5.lower():
        return False
    return True


def download(
    url: str,
    dest: Path,
    sha256: str | None,
    timeout: float = 30,
    *,
    md5: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch ``url`` to ``dest``, verifying its digest; return ``dest``.

    Args:
        url: an ``http://``, ``https://`` or ``file://`` URL.
        dest: the final path; its folder is created. An existing file is replaced only after the new
            one is complete and verified.
        sha256: expected hex SHA-256, or None.
        timeout: seconds to wait for the connection and for each read.
        md5: expected hex MD5 (for datasets that publish only MD5), or None.
        progress: show a tqdm bar on stderr when the size is known and stderr is a terminal.

    Raises:
        DataError: the URL cannot be fetched ("could not download URL: <reason>; you are offline? put the
            file at DEST yourself") or the digest does not match (the download is deleted).
    """
    dest = Path(dest)
    if not url.lower().startswith(_SCHEMES):
        raise DataError(f"cannot download {url!r}: only http://, https:// and file:// URLs are supported; "
                        f"put the file at {dest} yourself")
    hashes = {name: hashlib.new(name) for name, want in (("sha256", sha256), ("md5", md5)) if want is not None}
    with atomic_open(dest, suffix=".part") as out:  # the old file stays until the new one is complete and verified
        try:
            response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (scheme checked above)
            with response:
                size = response.headers.get("Content-Length") if hasattr(response, "headers") else None
                total = int(size) if size and size.isdigit() else None
                bar = _progress_bar(total, dest.name) if progress and total else None
                try:
                    for block in iter(lambda: response.read(_CHUNK), b""):
                        out.write(block)
                        for h in hashes.values():
                            h.update(block)
                        if bar is not None:
                            bar.update(len(block))
                finally:
                    if bar is not None:
                        bar.close()
        except urllib.error.HTTPError as exc:  # reached the server, which refused: not an offline problem
            raise DataError(f"could not download {url}: HTTP {exc.code} {exc.reason}; try another mirror or "
                            f"put the file at {dest} yourself") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataError(f"could not download {url}: {reason}; you are offline? "
                            f"put the file at {dest} yourself") from exc
        for name, want in (("sha256", sha256), ("md5", md5)):
            if want is not None and hashes[name].hexdigest() != want.lower():
                raise DataError(f"{url}: {name} {hashes[name].hexdigest()} does not match the expected {want.lower()} "
                                f"(download deleted); retry, try another mirror, or put a good copy at {dest}")
    return dest


def download_first(
    urls: Sequence[str],
    dest: Path,
    sha256: str | None = None,
    timeout: float = 30,
    *,
    md5: str | None = None,
    progress: bool = True,
) -> Path:
    """:func:`download` from the first of ``urls`` (mirrors) that works; raise listing every failure."""
    failures = []
    for url in urls:
        try:
            return download(url, dest, sha256, timeout, md5=md5, progress=progress)
        except DataError as exc:
            failures.append(str(exc).split("; you are offline?")[0].split("; try another mirror")[0])
    if not failures:
        raise DataError(f"no URL to download {Path(dest).name} from; put the file at {dest} yourself")
    raise DataError(" | ".join(failures) + f"; you are offline? put the file at {dest} yourself")


def _progress_bar(total: int, name: str):  # noqa: ANN202 (tqdm type)

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, leave=False, disable=None)

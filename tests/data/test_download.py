"""Tests for vitlab.data.download against a local http.server on 127.0.0.1 (in a thread, shut down after
each test) and file:// URLs. Reference digests: hashlib on the bytes the test wrote."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from vitlab.data.download import download, download_first, verify_file
from vitlab.errors import DataError
from vitlab.io import file_digest

PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: more than one read chunk


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "blob.bin").write_bytes(PAYLOAD)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):  # keep the test output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_http_download_verifies_sha256_and_md5(server, tmp_path):
    dest = tmp_path / "out" / "blob.bin"
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    assert download(f"{server}/blob.bin", dest, sha, timeout=5, md5=md5) == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["blob.bin"]
    assert file_digest(dest) == sha and verify_file(dest, sha256=sha, md5=md5)
    assert not verify_file(dest, md5="0" * 32) and not verify_file(tmp_path / "missing")


def test_checksum_mismatch_deletes_the_download_and_keeps_an_existing_file(server, tmp_path):
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"old good copy")
    with pytest.raises(DataError, match=r"sha256 [0-9a-f]{64} does not match the expected f{64} \(download deleted\)"):
        download(f"{server}/blob.bin", dest, "f" * 64, timeout=5)
    assert dest.read_bytes() == b"old good copy"  # replaced only after verification
    assert _leftovers(tmp_path) == ["blob.bin", "served"]


def test_http_404_is_a_clear_error(server, tmp_path):
    dest = tmp_path / "d" / "nothing.bin"
    with pytest.raises(DataError, match=r"could not download .*/nothing.bin: HTTP 404 .*; try another mirror or put the file at"):
        download(f"{server}/nothing.bin", dest, None, timeout=5)
    assert _leftovers(dest.parent) == []


def test_unreachable_host_says_offline_and_where_to_put_the_file(tmp_path):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "x.bin"
    with pytest.raises(DataError, match=rf"could not download http://127.0.0.1:{port}/x.bin: .*; you are offline\? "
                                        rf"put the file at {dest} yourself"):
        download(f"http://127.0.0.1:{port}/x.bin", dest, None, timeout=2)
    assert _leftovers(tmp_path) == []


def test_a_server_that_never_answers_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(DataError, match="could not download .*timed out"):
            download(f"http://127.0.0.1:{port}/slow", tmp_path / "slow", None, timeout=0.3)
    assert _leftovers(tmp_path) == []


def test_file_url_and_mirrors(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "dl" / "copy.bin"
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    download_first([(tmp_path / "missing.bin").as_uri(), src.as_uri()], dest, sha)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(DataError, match="missing.bin.*missing2.bin.*put the file at"):
        download_first([(tmp_path / "missing.bin").as_uri(), (tmp_path / "missing2.bin").as_uri()], dest, sha)


def test_unsupported_scheme_is_refused(tmp_path):
    with pytest.raises(DataError, match="only http://, https:// and file://"):
        download("ftp://example.com/x", tmp_path / "x", None)

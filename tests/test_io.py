"""vitlab.io: atomic writes and file digests (reference: hashlib, os.stat)."""

import hashlib
import os
import stat

import pytest

from vitlab.io import (
    FILE_MODE,
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    file_digest,
    sha256_bytes,
    sha256_file,
    staging_dir,
)


def test_crash_while_writing_leaves_the_old_file_whole(tmp_path, monkeypatch) -> None:
    target = tmp_path / "notes.txt"
    atomic_write_text(target, "old")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "new and longer")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # no temporary file left behind


def test_an_error_inside_the_block_keeps_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(ValueError, match="half-way"), atomic_open(target) as handle:
        handle.write(b"partial")
        raise ValueError("half-way")
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["data.bin"]


def test_written_files_get_the_mode_an_ordinary_open_gives(tmp_path) -> None:
    ordinary = tmp_path / "ordinary"
    ordinary.write_bytes(b"x")
    written = atomic_write_bytes(tmp_path / "sub" / "atomic", b"x")  # the parent folder is created
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(ordinary.stat().st_mode) == FILE_MODE


def test_digests_match_hashlib(tmp_path) -> None:
    data = os.urandom(3 << 20 | 123)  # several 1 MiB chunks and a remainder
    path = atomic_write_bytes(tmp_path / "blob", data)
    assert sha256_file(path) == sha256_bytes(data) == hashlib.sha256(data).hexdigest()
    assert file_digest(path, "md5") == hashlib.md5(data).hexdigest()


def test_staging_dir_appears_whole_or_not_at_all(tmp_path) -> None:
    target = tmp_path / "export"
    with pytest.raises(RuntimeError), staging_dir(target) as folder:
        (folder / "config.json").write_text("{}")
        raise RuntimeError("crash before the weights")
    assert not target.exists() and os.listdir(tmp_path) == []
    with staging_dir(target) as folder:
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"w")
    assert sorted(os.listdir(target)) == ["config.json", "model.safetensors"] and os.listdir(tmp_path) == ["export"]
    atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"

"""vitlab.reproduce.protocol: the protocol's hash, its last commit, and the pre-registration line.

Reference: hashlib over the stream the module documents (name NUL length NUL bytes, files sorted by name); a
throw-away git repository under tmp_path whose commit times are set with GIT_COMMITTER_DATE, so that "committed
before the run" and "committed after it" are known in advance; git replaced by a stub where git itself is the
thing tested away (no checkout, no git binary).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from vitlab.reproduce import protocol, record_protocol_start
from vitlab.reproduce.protocol import (
    ProtocolState,
    now_iso,
    preregistration,
    protocol_digest,
    protocol_files,
    protocol_state,
)


def _write_protocol(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "1_a.yaml").write_text("name: a\n")
    (folder / "2_b.yaml").write_text("name: b\n")


def test_the_digest_is_sha256_of_the_sorted_name_and_bytes_pairs(tmp_path: Path) -> None:
    _write_protocol(tmp_path)
    (tmp_path / "notes.txt").write_text("not part of the protocol")
    stream = b"".join(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data
                      for name, data in [("1_a.yaml", b"name: a\n"), ("2_b.yaml", b"name: b\n")])
    assert protocol_digest(tmp_path) == hashlib.sha256(stream).hexdigest()
    before = protocol_digest(tmp_path)
    (tmp_path / "PROTOCOL.md").write_text("# the rules\n")
    assert [p.name for p in protocol_files(tmp_path)] == ["1_a.yaml", "2_b.yaml", "PROTOCOL.md"]
    with_note = protocol_digest(tmp_path)
    assert with_note != before
    (tmp_path / "2_b.yaml").write_text("name: b \n")  # one byte more
    assert protocol_digest(tmp_path) not in (before, with_note)


def test_the_shipped_protocol_is_the_reproduce_recipe_folder() -> None:
    from vitlab.reproduce.recipes import default_recipe_dir

    names = [p.name for p in protocol_files(default_recipe_dir())]
    assert names and all(n.endswith(".yaml") or n == "PROTOCOL.md" for n in names)
    assert "1_cutmix.yaml" in names and names == sorted(names)


def _git(repo: Path, *args: str, date: str | None = None) -> None:
    env = {**os.environ, "GIT_AUTHOR_DATE": date or "", "GIT_COMMITTER_DATE": date or ""}
    if date is None:
        env.pop("GIT_AUTHOR_DATE")
        env.pop("GIT_COMMITTER_DATE")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false",
                    "-C", str(repo), *args], check=True, capture_output=True, env=env)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose protocol folder ``proto/`` was committed on 2020-01-01 at noon UTC."""
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:  # pragma: no cover
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    _write_protocol(root / "proto")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "protocol", date="2020-01-01T12:00:00+00:00")
    return root / "proto"


def test_pre_registered_when_committed_before_the_run_started(repo: Path) -> None:
    state = protocol_state(repo)
    assert state.in_git and not state.uncommitted and state.committed_at == "2020-01-01T12:00:00+00:00"
    assert len(state.commit) == 40
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert state.commit == head
    first, line = preregistration(state, protocol_digest(repo), "2020-01-02T08:00:00+01:00")
    assert first == (f"**Protocol** (the 2 recipe files in `proto/`): sha256 `{state.digest}`; last commit `{head}` "
                     "at 2020-01-01T12:00:00+00:00.")
    assert line == ("**pre-registered**: the protocol was committed at 2020-01-01T12:00:00+00:00, before this run "
                    "started at 2020-01-02T08:00:00+01:00.")


def test_the_protocol_line_names_the_rules_file_when_there_is_one(tmp_path: Path) -> None:
    _write_protocol(tmp_path)
    (tmp_path / "PROTOCOL.md").write_text("# the rules\n")
    state = protocol_state(tmp_path)
    assert state.files == ("1_a.yaml", "2_b.yaml", "PROTOCOL.md")
    first, _ = preregistration(state, state.digest, now_iso())
    assert first.startswith(f"**Protocol** (the 2 recipe files and PROTOCOL.md (the rules) in `{tmp_path.name}/`)")


def test_not_pre_registered_when_the_protocol_changed_after_the_run_started(repo: Path) -> None:
    at_start = protocol_digest(repo)
    (repo / "1_a.yaml").write_text("name: a\nalpha: 0.1\n")
    _git(repo.parent, "commit", "-q", "-am", "looser alpha", date="2020-01-01T13:00:00+00:00")  # committed, even
    now = protocol_digest(repo)
    _, line = preregistration(protocol_state(repo), at_start, "2020-01-02T08:00:00+00:00")
    assert line == (f"**not pre-registered**: the protocol changed after the run started (hash {at_start[:12]} at "
                    f"start, {now[:12]} now).")


def test_not_pre_registered_when_last_committed_after_the_run_started(repo: Path) -> None:
    """The run started at 11:00, before the noon commit: the rules it ran under were committed only afterwards."""
    _, line = preregistration(protocol_state(repo), protocol_digest(repo), "2020-01-01T11:00:00+00:00")
    assert line == ("**not pre-registered**: the protocol was last committed at 2020-01-01T12:00:00+00:00, after the "
                    "run started at 2020-01-01T11:00:00+00:00.")
    # the same instant written in another offset: 13:00+02:00 is 11:00 UTC, still before the commit
    _, again = preregistration(protocol_state(repo), protocol_digest(repo), "2020-01-01T13:00:00+02:00")
    assert again.startswith("**not pre-registered**: the protocol was last committed")


def test_not_pre_registered_with_uncommitted_or_untracked_protocol_files(repo: Path) -> None:
    (repo / "3_c.yaml").write_text("name: c\n")  # untracked: part of the hash, not of any commit
    state = protocol_state(repo)
    assert state.uncommitted
    _, line = preregistration(state, state.digest, now_iso())
    assert line == "**not pre-registered**: the protocol has changes that are not committed (git status)."


def test_no_record_or_no_git_checkout_is_not_pre_registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_protocol(tmp_path / "proto")
    monkeypatch.setattr(protocol, "git", lambda folder, *args: None)  # git missing, or not a checkout
    state = protocol_state(tmp_path / "proto")
    assert state == ProtocolState(str(tmp_path / "proto"), protocol_digest(tmp_path / "proto"), False,
                                  files=("1_a.yaml", "2_b.yaml"))
    first, line = preregistration(state, state.digest, now_iso())
    assert first.endswith("last commit unknown (not a git checkout).")
    assert line == "**not pre-registered**: the protocol's commit is unknown (not a git checkout)."
    assert preregistration(state, None, None)[1] == ("**not pre-registered**: run_info.json recorded no protocol "
                                                     "hash when the run started.")


def test_a_folder_never_committed_is_not_pre_registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_protocol(tmp_path)
    answers = {"rev-parse": "true", "log": "", "status": "?? 1_a.yaml\n?? 2_b.yaml"}
    monkeypatch.setattr(protocol, "git", lambda folder, *args: answers[args[0]])
    state = protocol_state(tmp_path)
    assert state.in_git and state.commit is None and state.uncommitted
    first, line = preregistration(state, state.digest, now_iso())
    assert "last commit none (the folder was never committed)" in first
    assert line == "**not pre-registered**: the protocol was never committed."


def test_the_first_start_is_recorded_once_and_kept(tmp_path: Path) -> None:
    _write_protocol(tmp_path / "proto")
    path = tmp_path / "out" / "run_info.json"
    info = record_protocol_start(path, {}, tmp_path / "proto")
    assert json.loads(path.read_text()) == info
    assert info["protocol_sha256"] == protocol_digest(tmp_path / "proto") and info["started_at"]
    (tmp_path / "proto" / "1_a.yaml").write_text("changed\n")
    assert record_protocol_start(path, info, tmp_path / "proto") == info  # a resumed run keeps its first start

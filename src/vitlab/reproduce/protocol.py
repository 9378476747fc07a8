"""Pre-registration: the protocol's hash at the start of a run, and whether it was committed before the run.

The protocol is the folder of reproduction recipes (``vitlab/recipes/reproduce``): every ``*.yaml`` there and
``PROTOCOL.md`` if it exists. Its hash (:func:`protocol_digest`) is the SHA-256 of the files sorted by name, each
written as ``name NUL length NUL bytes`` (so that no two different sets of files give the same stream).
:func:`vitlab.reproduce.reproduce` records it, with the start time, in ``run_info.json`` when a run starts; the
report then states (:func:`preregistration`):

* the protocol's hash and the git commit that last changed the folder (``git log -1 --format='%H %cI' -- DIR``),
  or "unknown (not a git checkout)";
* **pre-registered** only when all of these hold: the hash now equals the hash at the start (the rules were not
  changed after the run started), the folder is in a git checkout with no uncommitted change to it, and its last
  commit is no later than the start (C ≤ S, both ISO 8601 times with their offsets). Otherwise one line says why
  not.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vitlab.io import sha256_bytes

PROTOCOL_NOTE = "PROTOCOL.md"
GIT_TIMEOUT_S = 20


def protocol_files(folder: str | Path) -> list[Path]:
    """The protocol's files: the recipe YAMLs of ``folder`` and its ``PROTOCOL.md`` (if any), sorted by name."""
    folder = Path(folder)
    files = list(folder.glob("*.yaml")) + [p for p in [folder / PROTOCOL_NOTE] if p.is_file()]
    return sorted(files, key=lambda p: p.name)


def protocol_digest(folder: str | Path) -> str:
    """SHA-256 (hex) of the protocol's (name, bytes) pairs sorted by name (the module docstring gives the stream)."""
    stream = bytearray()
    for path in protocol_files(folder):
        data = path.read_bytes()
        stream += path.name.encode("utf-8") + b"\0" + str(len(data)).encode("ascii") + b"\0" + data
    return sha256_bytes(bytes(stream))


def now_iso() -> str:
    """The local time now, ISO 8601 to the second with its UTC offset (comparable with git's ``%cI``)."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def git(folder: str | Path, *args: str) -> str | None:
    """``git -C folder ARGS``'s standard output, stripped; None when git is missing or the command fails."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@dataclass(frozen=True)
class ProtocolState:
    """The protocol folder as it is now: its hash and, in a git checkout, the commit that last changed it.

    ``files``: the names hashed (:func:`protocol_files`); ``in_git``: the folder lies in a git work tree;
    ``commit`` / ``committed_at``: the last commit touching the folder (None when it was never committed or git is
    unavailable); ``uncommitted``: a file in the folder differs from that commit, is deleted or is not tracked.
    """

    folder: str
    digest: str
    in_git: bool
    commit: str | None = None
    committed_at: str | None = None
    uncommitted: bool = False
    files: tuple[str, ...] = ()


def protocol_state(folder: str | Path) -> ProtocolState:
    """Hash the protocol in ``folder`` and ask git (if the folder is in a checkout) when it last changed."""
    digest = protocol_digest(folder)
    files = tuple(p.name for p in protocol_files(folder))
    if git(folder, "rev-parse", "--is-inside-work-tree") != "true":
        return ProtocolState(str(folder), digest, False, files=files)
    last = git(folder, "log", "-1", "--format=%H %cI", "--", ".") or ""
    commit, _, when = last.partition(" ")
    status = git(folder, "status", "--porcelain", "--untracked-files=all", "--", ".")  # any change, even a deletion
    return ProtocolState(str(folder), digest, True, commit or None, when or None, status is None or bool(status),
                         files)


def preregistration(state: ProtocolState, digest_at_start: str | None, started_at: str | None) -> list[str]:
    """Two lines for the report: the protocol (hash, last commit), then pre-registered or, in one line, why not.

    Args:
        state: the protocol now (:func:`protocol_state`).
        digest_at_start, started_at: what ``run_info.json`` recorded when the run started (None: nothing was).
    """
    if not state.in_git:
        commit = "unknown (not a git checkout)"
    elif state.commit is None:
        commit = "none (the folder was never committed)"
    else:
        commit = f"`{state.commit}` at {state.committed_at}"
    recipes = sum(name.endswith(".yaml") for name in state.files)
    note = f" and {PROTOCOL_NOTE} (the rules)" if PROTOCOL_NOTE in state.files else ""
    first = (f"**Protocol** (the {recipes} recipe files{note} in `{Path(state.folder).name}/`): sha256 "
             f"`{state.digest}`; last commit {commit}.")
    return [first, _verdict_line(state, digest_at_start, started_at)]


def _verdict_line(state: ProtocolState, digest_at_start: str | None, started_at: str | None) -> str:
    """"pre-registered: ..." or "not pre-registered: ..." (the first rule that fails, in the docstring's order)."""
    if digest_at_start is None or started_at is None:
        return "**not pre-registered**: run_info.json recorded no protocol hash when the run started."
    if digest_at_start != state.digest:
        return (f"**not pre-registered**: the protocol changed after the run started (hash {digest_at_start[:12]} "
                f"at start, {state.digest[:12]} now).")
    if not state.in_git:
        return "**not pre-registered**: the protocol's commit is unknown (not a git checkout)."
    if state.commit is None or state.committed_at is None:
        return "**not pre-registered**: the protocol was never committed."
    if state.uncommitted:
        return "**not pre-registered**: the protocol has changes that are not committed (git status)."
    if datetime.fromisoformat(state.committed_at) > datetime.fromisoformat(started_at):
        return (f"**not pre-registered**: the protocol was last committed at {state.committed_at}, after the run "
                f"started at {started_at}.")
    return (f"**pre-registered**: the protocol was committed at {state.committed_at}, before this run started at "
            f"{started_at}.")

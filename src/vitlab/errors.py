"""vitlab's exceptions.

Every error a person can cause (a bad name, a bad value, a bad file) is raised as one of these, with a
message that names the bad value and, where there is one, the fix. They subclass ``ValueError`` so
library callers can catch them the usual way; the CLI turns any of them into one line on stderr and
exit code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VitlabError(ValueError):
    """Base class of the errors vitlab raises for bad input."""


class ConfigError(VitlabError):
    """A configuration key or value is wrong."""


class DataError(VitlabError):
    """A dataset, file or batch is missing, corrupt or malformed."""


class CheckpointError(VitlabError):
    """A checkpoint or weights file is missing, damaged or unsafe."""


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    """One-line message for an unknown ``name`` of ``kind``, suggesting the nearest valid choice.

    >>> unknown_name_message("model", "vit_tiny", ["vit_tiny_patch4_32"])
    "unknown model 'vit_tiny'; did you mean 'vit_tiny_patch4_32'? (choices: vit_tiny_patch4_32)"
    """
    choices = sorted(choices)
    if not name.isprintable():  # a key with a newline or control characters: keep the message one line
        name = name.encode("unicode_escape").decode("ascii")
    near = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f"; did you mean '{near[0]}'?" if near else ";"
    shown = ", ".join(choices) if len(choices) <= 12 else ", ".join(choices[:12]) + ", ..."
    return f"unknown {kind} '{name}'{hint} (choices: {shown})"

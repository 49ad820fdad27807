"""Finding the command-line tools (attnc, attn-run, attn-opt) and running them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional, Sequence

__all__ = ["ToolError", "find_tool", "run_tool"]

_ENV = {"attnc": "ATTNC", "attn-run": "ATTN_RUN", "attn-opt": "ATTN_OPT"}


class ToolError(RuntimeError):
    """A tool is missing or failed; the message holds its command and output."""


def _candidates(name: str) -> List[Path]:
    out: List[Path] = []
    env = os.environ.get(_ENV.get(name, ""), "")
    if env:
        out.append(Path(env))
    bindir = os.environ.get("ATTN_BIN_DIR", "")
    if bindir:
        out.append(Path(bindir) / name)
    on_path = shutil.which(name)
    if on_path:
        out.append(Path(on_path))
    # A source checkout used through PYTHONPATH: <repo>/python/attn/ ->
    # <repo>/build*/bin.
    repo = Path(__file__).resolve().parent.parent.parent
    if (repo / "tools" / "attnc").is_dir():
        out.append(repo / "build" / "bin" / name)
        out.extend(sorted(repo.glob("build*/bin/" + name)))
    return out


def find_tool(name: str, explicit: Optional[str] = None) -> str:
    """The path of tool ``name``: ``explicit`` if given; else the variable
    $ATTNC / $ATTN_RUN / $ATTN_OPT; else $ATTN_BIN_DIR/<name>; else <name> on
    PATH; else <checkout>/build*/bin/<name> when this package lies in a
    source checkout. Raises :class:`ToolError` if none exists."""
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise ToolError(f"{name}: {explicit} is not an executable file")
        return str(explicit)
    tried = []
    for c in _candidates(name):
        tried.append(str(c))
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    var = _ENV.get(name, "ATTN_BIN_DIR")
    raise ToolError(
        f"cannot find {name}: set ${var} (or $ATTN_BIN_DIR) or put it on PATH"
        + (f" (tried {', '.join(tried)})" if tried else ""))


def run_tool(args: Sequence[str], what: str) -> subprocess.CompletedProcess:
    """Runs a tool; raises :class:`ToolError` with its output if it fails."""
    try:
        proc = subprocess.run(list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    except OSError as e:
        raise ToolError(f"{what}: cannot run {args[0]}: {e}") from None
    if proc.returncode != 0:
        msg = (proc.stderr or "") + (proc.stdout or "")
        raise ToolError(f"{what} failed (exit status {proc.returncode}):\n  "
                        + " ".join(str(a) for a in args) + "\n" + msg.rstrip())
    return proc

"""pytest setup for the attn Python package tests.

Run by ctest (test/python/CMakeLists.txt sets $ATTNC, $ATTN_RUN, $ATTN_OPT,
$ATTN_CACHE_DIR and PYTHONPATH), or by hand from a checkout:

    PYTHONPATH=python ATTN_BIN_DIR=build/bin /usr/bin/python3 -m pytest test/python
"""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "python") not in sys.path:
    sys.path.insert(0, str(REPO / "python"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory):
    """Compiled libraries go to $ATTN_CACHE_DIR, else a fresh directory."""
    if not os.environ.get("ATTN_CACHE_DIR"):
        os.environ["ATTN_CACHE_DIR"] = str(tmp_path_factory.mktemp("attn-cache"))
    return os.environ["ATTN_CACHE_DIR"]

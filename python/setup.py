"""Installs the attn Python package: ``pip install ./python`` (offline: it
needs only setuptools, which Debian ships as python3-setuptools).

The package drives the ``attnc`` and ``attn-run`` tools; it finds them
through $ATTNC / $ATTN_RUN, $ATTN_BIN_DIR or PATH (see docs/python.md).
"""

from setuptools import setup

setup(
    name="attn",
    version="0.1.0",
    description="Attention cascades: builder, attnc driver, numpy ctypes "
                "loader, float64 checks",
    packages=["attn"],
    python_requires=">=3.9",
    install_requires=["numpy"],
)

"""``python -m langchain_multigateway`` and the ``multigateway`` script: see :mod:`langchain_multigateway.cli`."""

from __future__ import annotations

import sys

from langchain_multigateway.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())

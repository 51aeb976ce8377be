"""Where the conformance suite's data lives: the repository's top-level `conformance/` folder (cases, golden
files, PROTOCOL.md), which is data and docs, not code. Found from a checkout or an editable install; the
environment variable TMODEL_CONFORMANCE (or `tmodel conformance run --suite DIR`) names another copy."""

from __future__ import annotations

import os
from pathlib import Path

SUITE = Path(os.environ.get("TMODEL_CONFORMANCE") or Path(__file__).resolve().parents[3] / "conformance")

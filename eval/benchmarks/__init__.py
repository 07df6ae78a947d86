"""Benchmarks: scripts that measure and save numbers (JSON in eval/benchmarks/results/), never tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(report: dict, out) -> Path:
    """Save one benchmark's report as indented JSON (folders created) and say where."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return out

"""Benchmarks: scripts that measure and save numbers (JSON in eval/benchmarks/results/), never tests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def ndcg(ranked_gains, all_gains, k: int = 10) -> float:
    """nDCG@k: the gains of the first k results in rank order against the best possible order of
    `all_gains` (log2 discounts; 0 when nothing is relevant). Binary relevance: gains of 1 and 0."""
    import numpy as np

    discounts = 1 / np.log2(np.arange(2, k + 2))
    top = np.asarray(list(ranked_gains)[:k], dtype=float)
    best = np.sort(np.asarray(list(all_gains), dtype=float))[::-1][:k]
    ideal = float((best * discounts[: len(best)]).sum())
    return float((top * discounts[: len(top)]).sum()) / ideal if ideal else 0.0


def write_results(report: dict, out) -> Path:
    """Save one benchmark's report as indented JSON (folders created) and say where."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return out


def stand_in_checkpoint(directory: Path) -> Path:
    """The tiny preset with random weights (tokenizer trained on this repository's README and library code)."""
    import torch

    from musicllm.checkpoint import save_checkpoint
    from musicllm.tiny import build_tiny

    if not (directory / "config.json").is_file():
        torch.manual_seed(0)
        files = [Path("README.md"), *sorted(Path("musicllm").glob("*.py"))]
        texts = [line for path in files if path.is_file() for line in path.read_text().splitlines() if line.strip()]
        model, processor = build_tiny(texts, vocab_size=4096)
        save_checkpoint(model, processor, directory)
    return directory


def choose_checkpoint(given, workdir: Path) -> tuple[Path, str]:
    """(folder, which) a benchmark measures: --checkpoint ("given"), else the built default model
    ("default"), else a random stand-in built under `workdir`, so that a fresh clone measures too."""
    from musicllm import paths

    if given is not None:
        return Path(given).expanduser(), "given"
    if paths.has_default_model():
        return paths.default_model_dir(), "default"
    return stand_in_checkpoint(Path(workdir) / "stand-in"), "stand-in (tiny preset, random weights)"


def benchmark_parser(doc: str, default_out, engines: list[str] | None = None,
                     engines_help: str = "engines to measure") -> argparse.ArgumentParser:
    """A benchmark's command line with the flags they share: --checkpoint (read by
    choose_checkpoint) and --out (written by write_results); with `engines` (the default order),
    also --engines, --max-tokens and --threads for the generation benchmarks. The caller adds its own."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="musicllm checkpoint (default: the built default model, else a random stand-in)")
    parser.add_argument("--out", default=default_out, help="where to write the JSON results")
    if engines:
        parser.add_argument("--engines", nargs="+", default=engines, choices=["transformers", "vllm"], help=engines_help)
        parser.add_argument("--max-tokens", type=int, default=64, help="longest generated text per request, in tokens")
        parser.add_argument("--threads", type=int, default=1,
                            help="torch CPU threads here, and each engine's LLM threads (vLLM's OpenMP threads)")
    return parser

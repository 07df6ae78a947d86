"""Build the embedded default model from nothing (`musicllm quickstart`).

    musicllm quickstart               # build if missing, reuse every finished step otherwise
    musicllm quickstart --force       # start again from an empty folder
    musicllm quickstart --size small  # a fast, weaker build (tests use it)

The recipe, every setting and step, is training/recipe.py: synthesise the corpus, write the text,
MIR estimates, the out-of-distribution corpus, clips of silence and noise, build the model, train
the attribute heads and stage 2, evaluate. Each step is skipped when its output exists, so a build that was stopped
resumes where it stopped. The trained model is then published whole as the default checkpoint.

Everything lives under $MUSICLLM_HOME/default (default ~/.cache/musicllm/default):
corpus/, ood_corpus/, not_music/, data/, runs/, eval/ (REPORT.md, ood/REPORT.md) and model/ (the default
checkpoint).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from musicllm import paths
from training.recipe import SIZES, build


def ensure_default_model(force: bool = False, size: str = "default", workers: int = 2) -> Path:
    """The default checkpoint folder, built first if it is missing (or `force`)."""
    out = paths.default_model_dir()
    root = out.parent
    if paths.has_default_model() and not force:
        return out
    if force:
        shutil.rmtree(root, ignore_errors=True)
    started = time.time()
    print(f"building the default model in {root} (size {size}) ...", flush=True)
    final = build(root, SIZES[size], workers)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(final, tmp)
    record = {"recipe": "training/recipe.py", "size": size, "trained": True, "seconds": round(time.time() - started),
             "report": str(root / "eval" / "REPORT.md")}
    (tmp / "BUILD.json").write_text(json.dumps(record, indent=2))
    paths.replace_folder(tmp, out)  # the default appears whole or not at all
    print(f"default model ready: {out} (this run: {time.time() - started:.0f} s; report: {record['report']})")
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="musicllm quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="delete everything built so far and start again")
    parser.add_argument("--size", choices=sorted(SIZES), default="default", help="corpus and training size")
    parser.add_argument("--workers", type=int, default=2, help="processes for rendering and annotation")
    args = parser.parse_args(argv)
    try:
        print(ensure_default_model(force=args.force, size=args.size, workers=args.workers))
    except KeyboardInterrupt:
        print("\nquickstart: interrupted; run it again to resume from the last finished step", flush=True)
        return 130
    except OSError as err:  # publishing the model (a full disk, a folder not writable)
        print(f"quickstart: {err}", flush=True)
        return 1
    return 0

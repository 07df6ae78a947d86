"""Multiple-choice questions as training conversations, in the evaluation's own prompt format.

    python -m training.multiple_choice data/mc_train.csv --out data/mc_train.jsonl --orders 2

The user turn is exactly what `musicllm eval predict` shows (MuChoMusic's prompt, after the
audio); the assistant answers "option text (B)", or with `--text-share` of the questions (seeded)
the option text alone, the answer the cloze scorer ranks. The text comes first: a 135M LLM picks
the right option's text long before it learns which letter goes with it, and a reply that opened
with the letter ("(B) option text", as until session 39) was a guess of the letter that the text
then copied: the default model's replies that opened so named the right option on 103 of 383
test questions (27%; chance 25%), where its option-text likelihoods were right on 83.6% of all.
The default model's recipe answers with the text alone (`--text-share 1`: training/recipe.py's
ANSWER_TEXT_SHARE): even after the text, its letter named another option than the text on 70 of
240 written answers that carried one (session 39).
Each question is written with `--orders` different option orders, so the model cannot learn
positions. The prompt and the option orders come from `data_gen.questions`, so training and
evaluation cannot drift apart.

    python -m training.multiple_choice data/mc_train.csv --out data/mc_read.jsonl --read data/captions.jsonl

`--read` writes the same questions as text-only reading comprehension instead: per clip (and
option order), a caption of the clip that states the answers (where one does; seeded among
equals) stands where the audio would be, and all of the clip's questions follow, one turn each
(the caption is read once for six answers: held-out reading accuracy 73% -> 78-84% after
600-1000 steps instead of 800, one draw of questions; runs vary by several points). A
small LLM trained from scratch does not know how to pick the option that its context supports;
it learns that skill from text first (the reading step of the quickstart before SmolLM2) and the projector then only
has to make the audio look like evidence of the same kind: 47% -> 74% on held-out questions,
same stages 1 and 2.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

from data_gen.formats import JsonlWriter, read_jsonl, validate_conversation
from data_gen.questions import LETTERS, format_prompt, load_questions

WORD = re.compile(r"[a-z0-9#/]+")


def conversations(csv_path: str | Path, split: str, orders: int = 2, seed: int = 0,
                  captions: str | Path | None = None, text_share: float = 0.0) -> list[dict]:
    """Each question `orders` times, options shuffled, after its clip's audio; with `captions`
    (conversations JSONL with clip_id), the text-only reading version instead: per clip and
    order, one conversation that gives a caption of the clip stating the answers (where one
    does) and then asks all of the clip's questions, one turn each. `text_share`: the share of
    audio questions answered with the option text alone."""
    context = clip_captions(captions) if captions else None
    rng = random.Random(seed)
    records = []
    for order_seed in range(seed, seed + orders):
        items = load_questions(csv_path, seed=order_seed)
        if context is None:
            records.extend(_record(f"{item['id']}:mc:{order_seed}", [item["audio"]], "<|audio|>", [item], "mc",
                                   split, order_seed, letter=rng.random() >= text_share) for item in items)
            continue
        by_clip = defaultdict(list)
        for item in items:
            by_clip[item["dataset_identifier"]].append(item)
        for clip, asked in by_clip.items():
            if not context.get(clip):
                raise ValueError(f"{csv_path}: question {asked[0]['id']}: no caption of clip {clip!r} in {captions}")
            evidence = rng.choice(supporting(context[clip], asked))
            rng.shuffle(asked)  # the turns' order varies too: no question always comes first
            records.append(_record(f"{clip}:mc_read:{order_seed}", [], evidence, asked, "mc_read", split, order_seed))
    return records


def _record(record_id: str, audio: list[str], context: str, items: list[dict], task: str, split: str,
            order_seed: int, letter: bool = True) -> dict:
    """One conversation: `context` (the audio token or a caption), then each question and its
    answer "option text (B)" (or, not `letter`, "option text")."""
    messages = []
    for turn, item in enumerate(items):
        prompt = format_prompt(item["question"], item["options"])
        answer = item["answer_index"]
        messages.append({"role": "user", "content": context + "\n" + prompt if turn == 0 else prompt})
        text = item["options"][answer]
        messages.append({"role": "assistant", "content": f"{text} ({LETTERS[answer]})" if letter else text})
    return validate_conversation({
        "id": record_id, "audio": audio, "messages": messages, "task": task, "split": split,
        "provenance": {"writer": "multiple_choice", "model": "rules", "prompt_version": "muchomusic",
                       "seed": order_seed}})


def supporting(captions: list[str], items: list[dict]) -> list[str]:
    """The captions that best support the answers to `items` (questions with options and
    answer_index): most words of the right options, fewest of the wrong ones (a caption that
    does not state the key teaches nothing about key questions)."""
    def score(caption: str) -> int:
        said = set(WORD.findall(caption.lower()))
        return sum(len(said & set(WORD.findall(option.lower()))) * (1 if i == item["answer_index"] else -1)
                   for item in items for i, option in enumerate(item["options"]))

    scores = [score(c) for c in captions]
    best = max(scores)
    return [c for c, s in zip(captions, scores) if s == best]


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
    parser.add_argument("--text-share", type=float, default=0.0,
                        help="share of questions answered with the option text alone, without its letter (default 0)")
    parser.add_argument("--read", type=Path, metavar="CAPTIONS_JSONL",
                        help="write text-only reading comprehension: a caption of each clip, then its questions")
    args = parser.parse_args(argv)
    try:  # built whole before anything is written: a bad input leaves the old --out as it was
        records = conversations(args.questions, args.split, args.orders, args.seed, captions=args.read,
                                text_share=args.text_share)
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

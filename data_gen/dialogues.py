"""Multi-turn conversations about one clip, made from its single-turn ones (any writer's).

    python -m data_gen.dialogues data/captions.jsonl data/instructions.jsonl data/mc_train.jsonl \\
        --out data/dialogues.jsonl --per-clip 2 --turns 4

A user asks several things about one song: what is playing, then the key, then whether it would
suit a party. Each dialogue here takes `--turns` of a clip's written turns (captions, Q&A,
multiple choice; each record's first question and answer), in a seeded order, with the audio in
the first user turn only, so later answers must come from the audio heard earlier in the
conversation. Every other dialogue also asks, at any turn, something the audio cannot tell (who
composed it, its title, the year; with `--timeless`, for a model that hears no time, where its
sections are), answered honestly. Questions of several kinds on one clip,
each answered differently, are what teach a model to answer the question asked rather than
the clip.

One dialogue costs the system prompt and the audio once for several answers: about half the
tokens of as many single-turn conversations.

This module knows nothing about wording facts: the turns come from the writers, the honest
refusals from `UNKNOWABLE` (and `TIMELESS`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

from data_gen.formats import AUDIO_TOKEN as AUDIO, JsonlWriter, read_jsonl, validate_conversation
from data_gen.writers.base import CAPTION_TASKS
from data_gen.writers.phrases import seeded_rng

# Questions a recording does not answer, and honest answers that say so and what can be said.
UNKNOWABLE = {
    "composer": (["Who composed this?", "Who wrote this piece?", "Do you know who the composer is?"],
                 ["I can't tell who composed it from the audio alone.",
                  "The recording doesn't tell me who wrote it, so I can't say."]),
    "title": (["What is the title of this song?", "What's this track called?", "Do you know the name of this piece?"],
              ["I can't tell the title from the sound alone.", "I don't know its title: the audio doesn't say."]),
    "performer": (["Who is playing this?", "Which band or artist is this?"],
                  ["I can't identify the performers from the audio.",
                   "I can hear the instruments, but not who is playing them."]),
    "year": (["When was this recorded?", "What year is this from?"],
             ["I can't date the recording from the audio alone.", "The audio doesn't tell me when it was made."]),
}
# ... and, for a model that hears no time (the default's attribute tokens describe a whole window:
# training/attributes.heard), where its sections are. Asked "When does the chorus start?", a
# model never trained on the question invented one ("It is in 3:00, at the beginning of a minor
# key."; README, T).
TIMELESS = {
    "sections": (["When does the chorus start?", "Where does the verse begin?", "How long is the intro?",
                  "At what point does the bridge come in?", "When does the song change section?"],
                 ["I can't tell where its sections begin: I hear its key, tempo, metre and instruments, "
                  "not when each part starts.",
                  "I can't say when its parts begin or end; I can tell you about its key, tempo and instruments."]),
}


# Turns of one dialogue are of different kinds: one caption-like answer at most (they are long
# and alike), one multiple-choice question (a clip has many), up to two factual questions.
TURN_GROUPS = dict.fromkeys(CAPTION_TASKS, "caption")
TURN_LIMITS = {"qa_factual": 2}


def first_turn(record: dict) -> tuple[str, str] | None:
    """(question without the audio mark, answer) of a conversation's first exchange."""
    messages = record["messages"]
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users or users[0] + 1 >= len(messages) or messages[users[0] + 1]["role"] != "assistant":
        return None
    question = messages[users[0]]["content"].replace(AUDIO, "").strip()
    return question, messages[users[0] + 1]["content"]


def by_clip(files: list[Path]) -> dict[str, list[dict]]:
    """Single-audio records of every file, grouped by clip: by their audio file's resolved path,
    which every writer records (multiple-choice records carry no `clip_id`)."""
    clips = defaultdict(list)
    for path in files:
        for record in read_jsonl(path):
            if len(record.get("audio", [])) != 1:
                continue
            audio = str((path.parent / record["audio"][0]).resolve())
            clips[audio].append({**record, "audio": [audio]})
    return clips


def dialogue(clip: str, records: list[dict], turns: int, index: int, seed: int, out_dir: Path,
             unknowable: dict = UNKNOWABLE) -> dict | None:
    """One seeded dialogue of `turns` exchanges about the clip whose audio file is `clip` (None
    when it has too few distinct ones); every other one also asks one of `unknowable`'s questions."""
    clip_id = next((r["clip_id"] for r in records if r.get("clip_id")), Path(clip).stem)
    rng = seeded_rng(seed, clip_id, "dialogue", index)  # not the path: the same dialogues wherever the data live
    exchanges, seen, taken = [], set(), Counter()
    for record in rng.sample(records, len(records)):
        turn, group = first_turn(record), TURN_GROUPS.get(record["task"], record["task"])
        if turn and turn[0] not in seen and taken[group] < TURN_LIMITS.get(group, 1):
            seen.add(turn[0])
            taken[group] += 1
            exchanges.append(turn)
    if len(exchanges) < min(2, turns):
        return None
    exchanges = exchanges[:turns]
    if rng.random() < 1 / 2:  # first or later: a user may open with "who wrote this?"
        questions, answers = unknowable[rng.choice(sorted(unknowable))]
        exchanges.insert(rng.randrange(0, len(exchanges) + 1), (rng.choice(questions), rng.choice(answers)))
    messages = []
    for number, (question, answer) in enumerate(exchanges):
        messages.append({"role": "user", "content": f"{AUDIO}\n{question}" if number == 0 else question})
        messages.append({"role": "assistant", "content": answer})
    return validate_conversation({
        "id": f"{clip_id}:dialogue:{index}", "audio": [os.path.relpath(clip, out_dir.resolve())], "messages": messages,
        "task": "dialogue", "clip_id": clip_id, "split": records[0].get("split", "train"),
        "provenance": {"writer": "dialogues", "model": "rules",
                       "prompt_version": "dialogue-v1 (turns by " + ", ".join(sorted(
                           {r["provenance"]["writer"] for r in records})) + ")", "seed": seed}})


def write_dialogues(files: list[Path], out: Path, per_clip: int = 2, turns: int = 4, seed: int = 0,
                    timeless: bool = False) -> int:
    """Writes the dialogues of every clip (`per_clip` each) to `out`; returns how many. `timeless`:
    for a model that hears no time, questions about where the sections are join the unanswerable."""
    unknowable = {**UNKNOWABLE, **TIMELESS} if timeless else UNKNOWABLE
    clips = by_clip(files)
    written = 0
    out.unlink(missing_ok=True)  # a pure function of its inputs: rebuilt whole, never appended to
    with JsonlWriter(out) as writer:
        for clip in sorted(clips):
            for index in range(per_clip):
                record = dialogue(clip, clips[clip], turns, index, seed, out.parent, unknowable)
                if record is not None:
                    writer.write(record)
                    written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_gen.dialogues", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="conversation JSONL files (captions, Q&A, multiple choice)")
    parser.add_argument("--out", type=Path, required=True, help="dialogues JSONL to write (replaced)")
    parser.add_argument("--per-clip", type=int, default=2, help="dialogues per clip (default 2)")
    parser.add_argument("--turns", type=int, default=4, help="written exchanges per dialogue (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="turn choice and order (default 0)")
    parser.add_argument("--timeless", action="store_true",
                        help="the model hears no time: questions about where its sections are get honest refusals "
                             "too (the data must not answer them elsewhere)")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"error: no such conversations file: {', '.join(missing)}", file=sys.stderr)
        return 2
    count = write_dialogues(args.files, args.out, args.per_clip, args.turns, args.seed, args.timeless)
    print(f"{count} dialogues -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

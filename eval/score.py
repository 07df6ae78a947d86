"""Phase 2 of multiple-choice evaluation: accuracies from predictions JSONL files.

    musicllm eval score preds/audio.jsonl preds/none.jsonl preds/noise.jsonl preds/other.jsonl \\
        preds/baseline.jsonl --out scores.json
    python -m eval.score ...                                   # the same
    musicllm eval report scores.json --out report/             # tables and plots

Each file is one run (a model under one audio mode, or the MIR baseline). Scorers, each where
the rows allow it:
    muchomusic   MuChoMusic's answer parser on `output` (eval.parsing.parse_muchomusic)
    robust       our parser on `output` (eval.parsing.parse_answer)
    loglik       the option with the highest summed log-likelihood (`option_logprobs`)
    loglik_mean  ... the highest mean log-likelihood per token
    cloze        the option whose text alone, without its letter, is the likeliest reply
                 (summed log-likelihood, `option_text_logprobs`)
    choice       a choice made by the predictor itself (`choice`, e.g. the MIR baseline)
Per scorer: accuracy (unanswered counts as wrong, as in MuChoMusic), the answered rate (the
share of outputs that parse to an option: instruction following; always 1 for loglik), and
the same per knowledge and reasoning dimension, per genre, per question type, and apart for
questions flagged text-only-guessable. Key and tempo questions also get confusion counts
(the true value against the value the chosen option names; "other" when it names none).

scores.json: {"kind": "multiple_choice", "runs": [{name, file, model, audio_mode, n, scorers,
primary, breakdown, confusion}]}. This module knows nothing about models.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from data_gen.formats import read_jsonl
from musicllm.text_attributes import option_value
from eval.parsing import parse_answer, parse_muchomusic

SCORERS = ("muchomusic", "robust", "loglik", "loglik_mean", "cloze", "choice")
PRIMARY_ORDER = ("choice", "robust", "loglik", "muchomusic")  # the figure of merit the report plots
CONFUSION_TYPES = ("key", "tempo")
UNANSWERED, OTHER = "unanswered", "other"


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])


def choices(row: dict) -> dict[str, int]:
    """scorer -> chosen option index (-1 unanswered), for the scorers this row supports."""
    options, out = row["options"], {}
    if isinstance(row.get("output"), str):
        out["muchomusic"] = parse_muchomusic(row["output"], options)
        out["robust"] = parse_answer(row["output"], options)
    logprobs = row.get("option_logprobs")
    if logprobs:
        out["loglik"] = _argmax(logprobs)
        counts = row.get("option_token_counts") or [1] * len(logprobs)
        out["loglik_mean"] = _argmax([lp / max(c, 1) for lp, c in zip(logprobs, counts)])
    if row.get("option_text_logprobs"):
        out["cloze"] = _argmax(row["option_text_logprobs"])
    if isinstance(row.get("choice"), int):
        out["choice"] = row["choice"]
    return out


def is_flagged(row: dict) -> bool:
    flags = row.get("flags") or ""
    return "text_only_guessable" in (flags if isinstance(flags, str) else " ".join(flags))


def groups(row: dict) -> dict[str, list[str]]:
    """breakdown table -> the groups this row belongs to."""
    return {
        "knowledge": row.get("knowledge") or [],
        "reasoning": row.get("reasoning") or [],
        "genre": [row["genre"]] if row.get("genre") else [],
        "question_type": [row["question_type"]] if row.get("question_type") else [],
        "flagged": ["text-only-guessable" if is_flagged(row) else "not flagged"],
    }


class Tally:
    def __init__(self):
        self.n, self.correct, self.answered = 0, defaultdict(int), defaultdict(int)

    def add(self, row: dict, chosen: dict[str, int]) -> None:
        self.n += 1
        for scorer, choice in chosen.items():
            self.correct[scorer] += choice == row["answer_index"]
            self.answered[scorer] += choice >= 0

    def summary(self) -> dict:
        return {"n": self.n, **{s: {"accuracy": self.correct[s] / self.n, "answered": self.answered[s] / self.n,
                                   "correct": self.correct[s]} for s in SCORERS if s in self.correct}}


def confusion_label(kind: str, row: dict, index: int) -> str:
    if index < 0:
        return UNANSWERED
    return option_value(kind, row["options"][index]) or OTHER


def score_rows(rows: list[dict], name: str = "", file: str = "") -> dict:
    """One run's scores (see the module docstring)."""
    if not rows:
        raise ValueError(f"{file or name}: no predictions")
    total, breakdown = Tally(), defaultdict(lambda: defaultdict(Tally))
    confusion = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))  # scorer -> kind -> "true|chosen" -> n
    for row in rows:
        chosen = choices(row)
        total.add(row, chosen)
        for table, names in groups(row).items():
            for group in names:
                breakdown[table][group].add(row, chosen)
        kind = row.get("question_type")
        if kind in CONFUSION_TYPES:
            truth = confusion_label(kind, row, row["answer_index"])
            for scorer, choice in chosen.items():
                confusion[scorer][kind][f"{truth}|{confusion_label(kind, row, choice)}"] += 1
    scores = total.summary()
    first = rows[0]
    return {
        "name": name or f"{Path(first.get('model') or 'model').name}/{first.get('audio_mode', '?')}",
        "file": file,
        "model": first.get("model"),
        "audio_mode": first.get("audio_mode"),
        "n": total.n,
        "scorers": {s: v for s, v in scores.items() if s != "n"},
        "primary": next(s for s in PRIMARY_ORDER if s in scores),
        "breakdown": {t: {g: tally.summary() for g, tally in sorted(by.items())} for t, by in breakdown.items()},
        "confusion": {s: {k: dict(cells) for k, cells in kinds.items()} for s, kinds in confusion.items()},
    }


def score_file(path: Path) -> dict:
    return score_rows(list(read_jsonl(path)), file=str(path))


def table(runs: list[dict]) -> str:
    """A plain-text summary, one line per run."""
    header = f"{'run':32s} {'n':>5s}  " + "  ".join(f"{s:>11s}" for s in SCORERS) + "  answered(robust)"
    lines = [header, "-" * len(header)]
    for run in runs:
        cells = [f"{run['scorers'][s]['accuracy']:11.3f}" if s in run["scorers"] else f"{'-':>11s}" for s in SCORERS]
        answered = run["scorers"].get("robust", {}).get("answered")
        lines.append(f"{run['name'][:32]:32s} {run['n']:5d}  " + "  ".join(cells) +
                     (f"  {answered:16.3f}" if answered is not None else f"  {'-':>16s}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musicllm eval score", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", nargs="+", type=Path, help="predictions JSONL files (one run each)")
    parser.add_argument("--out", type=Path, help="scores JSON to write (default: print only)")
    args = parser.parse_args(argv)
    runs = []
    for path in args.predictions:
        try:
            runs.append(score_file(path))
        except (ValueError, KeyError) as err:
            print(f"musicllm eval score: {path}: {err}", file=sys.stderr)
            return 2
    names = [r["name"] for r in runs]
    for run in runs:  # two files of one model and mode: tell them apart by file name
        if names.count(run["name"]) > 1:
            run["name"] = f"{run['name']} ({Path(run['file']).stem})"
    print(table(runs))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"kind": "multiple_choice", "runs": runs}, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A non-LLM baseline: answer the multiple-choice questions from MIR estimates alone.

    musicllm eval baseline --questions data/corpus/multiple_choice.csv \\
        --manifest data/corpus/manifest.annotated.jsonl --out preds/baseline.jsonl
    musicllm eval baseline --questions muchomusic.csv --audio-dir mc_audio/ --analyze --out preds/baseline.jsonl
    musicllm eval score preds/audio.jsonl preds/baseline.jsonl --out scores.json   # side by side

For each question the baseline reads what it asks about from its words (key, mode, tempo or
metre: `musicllm.text_attributes.asked_attribute`), takes the clip's estimate of that attribute, and
picks the one option that states the same value (the same key, the tempo band of the estimated
BPM, the same time signature, the same mode). It abstains (choice -1) on any other question, when
the clip has no estimate, or when no single option matches: it shows how much of a test set
plain signal processing answers, and so what a music LLM must beat on those questions.

Estimates come from the clip manifest's `estimates` (musicllm.analysis output; `musicllm data
annotate` writes them), joined on dataset_identifier == clip id; with --analyze, clips without
them are analysed here (librosa: slow on the first call). Never from `labels`: that would be
the answer key. The rows are predictions JSONL like eval.predict's, with `choice` (the score
phase's "choice" scorer), `answer_text` ("(B) option" or "", for reading; no `output`, so the
answer parsers do not score it again), and `basis` (the estimate used).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_gen.formats import FormatError, JsonlWriter, read_jsonl
from musicllm.vocabulary import tempo_band
from musicllm.text_attributes import asked_attribute, option_value
from data_gen.questions import LETTERS, ORDERS, QuestionError, load_questions

MODEL_NAME = "mir-baseline"


def estimate_value(kind: str, estimates: dict):
    """The estimate of attribute `kind` in option_value's terms, or None."""
    if kind == "key":
        key, mode = estimates.get("key"), estimates.get("mode")
        return f"{key} {mode}" if key and mode else None
    if kind == "mode":
        return estimates.get("mode")
    if kind == "tempo":
        bpm = estimates.get("tempo_bpm")
        return tempo_band(float(bpm)) if isinstance(bpm, (int, float)) and bpm > 0 else None
    if kind == "metre":
        return estimates.get("time_signature")
    return None


def choose(question: str, options: list[str], estimates: dict | None) -> tuple[int, str]:
    """(option index or -1, the basis of the choice)."""
    kind = asked_attribute(question)
    if kind is None:
        return -1, "question not about key, mode, tempo or metre"
    value = estimate_value(kind, estimates or {})
    if value is None:
        return -1, f"no {kind} estimate"
    matches = [i for i, option in enumerate(options) if option_value(kind, option) == value]
    if len(matches) != 1:
        return -1, f"{kind}={value}: {len(matches)} options match"
    return matches[0], f"{kind}={value}"


def load_estimates(manifest: Path | None) -> dict[str, dict]:
    if manifest is None:
        return {}
    return {clip["id"]: clip.get("estimates") or {} for clip in read_jsonl(manifest)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musicllm eval baseline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", required=True, type=Path, help="MuChoMusic-format CSV")
    parser.add_argument("--manifest", type=Path, help="clip manifest with `estimates` (clip id = dataset_identifier)")
    parser.add_argument("--analyze", action="store_true", help="analyse clips that have no estimates (needs audio)")
    parser.add_argument("--audio-dir", type=Path, help="folder of <dataset_identifier>.<ext> audio files")
    parser.add_argument("--audio-map", type=Path, help="JSON or CSV: dataset_identifier -> audio path")
    parser.add_argument("--out", required=True, type=Path, help="predictions JSONL to write (replaced)")
    parser.add_argument("--seed", type=int, default=0, help="option order seed: use the model runs' (default 0)")
    parser.add_argument("--order", default="balanced", choices=ORDERS, help="option order (data_gen.questions)")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    args = parser.parse_args(argv)
    if not args.manifest and not args.analyze:
        parser.error("give --manifest (estimates) and/or --analyze")
    try:
        items = load_questions(args.questions, args.audio_dir, args.audio_map, seed=args.seed, order=args.order,
                               require_audio=args.analyze)
        estimates = load_estimates(args.manifest)
    except (QuestionError, FormatError) as err:
        print(f"musicllm eval baseline: {err}", file=sys.stderr)
        return 2
    items = items[: args.limit] if args.limit else items
    analysed: dict[str, dict] = {}
    args.out.unlink(missing_ok=True)  # cheap to redo: always a whole file
    answered = 0
    with JsonlWriter(args.out) as writer:
        for item in items:
            found = estimates.get(item["dataset_identifier"])
            if not found and args.analyze and item["audio"]:
                if item["audio"] not in analysed:
                    from musicllm.analysis import analyze_file

                    analysed[item["audio"]] = analyze_file(item["audio"])
                found = analysed[item["audio"]]
            choice, basis = choose(item["question"], item["options"], found)
            answered += choice >= 0
            answer = f"({LETTERS[choice]}) {item['options'][choice]}" if choice >= 0 else ""
            writer.write({"id": item["id"], "audio_mode": "audio", "model": MODEL_NAME, "answer_text": answer,
                          "choice": choice, "basis": basis, **{k: v for k, v in item.items() if k != "id"},
                          "seed": args.seed, "order": args.order})
    print(f"{len(items)} questions, {answered} answered from estimates -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

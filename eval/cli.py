"""`musicllm eval VERB`: multiple-choice and captioning evaluation, in two phases.

    musicllm eval predict  --checkpoint CKPT --questions mc.csv --out preds/audio.jsonl [--audio-mode none|noise|other]
    musicllm eval baseline --questions mc.csv --manifest manifest.annotated.jsonl --out preds/baseline.jsonl
    musicllm eval score    preds/*.jsonl --out scores.json
    musicllm eval captions --checkpoint CKPT --manifest manifest.jsonl --out caps.jsonl
    musicllm eval report   scores.json caps.scores.json --out report/
    musicllm eval suite    --checkpoint CKPT                 # all of it on the quickstart's held-out sets
    musicllm eval VERB --help

Phase 1 (predict, baseline, captions with --checkpoint) writes predictions JSONL; phase 2
(score, captions without --checkpoint, report) reads only those files. Each verb's module is
imported when it runs, so `--help` is fast and scoring never loads torch models.
"""

from __future__ import annotations

import sys

from musicllm.cli import dispatch

VERBS = {
    "predict": ("eval.predict", "answer multiple-choice questions with a model (free text + option log-likelihoods)"),
    "baseline": ("eval.baseline", "answer them from MIR estimates (tempo, key, metre), no LLM"),
    "score": ("eval.score", "accuracy per scorer, dimension, genre, question type, flagged or not"),
    "follow": ("eval.follow", "ask every question kind in free text; score responds / correct / distinct answers"),
    "captions": ("eval.captioning", "caption clips and score BLEU, METEOR (exact), ROUGE-L and attributes"),
    "report": ("eval.report", "REPORT.md with tables and PNG plots from score files"),
    "suite": ("eval.suite", "all of the above on the quickstart's held-out and out-of-distribution sets"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("musicllm eval", VERBS, sys.argv[1:] if argv is None else argv, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())

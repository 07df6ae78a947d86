"""Captioning evaluation: generate captions for a manifest's clips, then score them.

    musicllm eval captions --checkpoint CKPT --manifest data/corpus/manifest.jsonl --out caps.jsonl
    musicllm eval captions --checkpoint CKPT --manifest M --references data/corpus/captions.jsonl \\
        --split test --limit 200 --out caps.jsonl --scores caps.scores.json
    musicllm eval captions --out caps.jsonl                 # score an existing file only
    musicllm eval report caps.scores.json scores.json --out report/

Phase 1 (with --checkpoint): one greedy caption per clip of the split, for the prompt
"<|audio|>\\n" + --prompt, appended to --out as {id, audio, caption, references, labels, model,
prompt}; ids already there are skipped (resumable). References are the assistant answers of the
conversations of --references (default: captions.jsonl beside the manifest) whose task is in
--reference-tasks, joined on the clip id in the conversation id ("<clip id>:<task>:<k>").

Phase 2 scores --out: n-gram metrics (eval.caption_metrics) on the rows that have references,
and the attribute score on every row with labels. The attribute score says more than n-gram
overlap: for each attribute the ground-truth labels give, whether the caption states it right,
states it wrong, or does not state it (musicllm.text_attributes reads the caption):
    tempo        the tempo band (musicllm.vocabulary) of a BPM number or band word; a BPM within
                 4% of the true one counts as right even across a band edge
    key, mode    "F# minor"; "major"/"minor" (also inside a key name)
    metre        "3/4", "triple metre", "three beats to the bar"
    instruments  right when at least one labelled instrument is named (synonyms: "drum kit" /
                 "drums", "string ensemble" / "strings"), wrong when only others are; recall and
                 precision of the named instruments are reported too
    genre        the genre (or a synonym: "edm" for electronic), and no other genre
Stating two values ("slow, then fast") counts as wrong: a caption is right only when it
commits to the true value. This module knows nothing about multiple choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from data_gen.formats import FormatError, JsonlWriter, read_jsonl
from musicllm.vocabulary import ATTRIBUTES as TRACK_ATTRIBUTES, tempo_band
from musicllm.text_attributes import (GENRES, INSTRUMENTS, bpms_in, canonical_genre, canonical_instrument, genres_in,
                             instruments_in, keys_in, mentions, metres_in, modes_in, tempo_bands_in)
from eval.caption_metrics import caption_metrics

# A track's attributes a caption is checked on (all but the mood), under their usual names.
ATTRIBUTES = tuple(name for name in TRACK_ATTRIBUTES if name != "mood")
STATUSES = ("correct", "wrong", "not_stated")
BPM_TOLERANCE = 0.04
DEFAULT_PROMPT = "Describe this music."


def _status(stated: set, truth) -> str:
    if not stated:
        return "not_stated"
    return "correct" if stated == {truth} else "wrong"


def attribute_accuracy(caption: str, labels: dict) -> dict[str, dict]:
    """attribute -> {"status": correct|wrong|not_stated, ...} for the attributes `labels` has."""
    out = {}
    bpm = labels.get("tempo_bpm")
    if isinstance(bpm, (int, float)) and bpm > 0:
        near = any(abs(b - bpm) <= BPM_TOLERANCE * bpm for b in bpms_in(caption))
        out["tempo_bpm"] = {"status": "correct" if near else _status(tempo_bands_in(caption), tempo_band(float(bpm)))}
    tonic, mode = labels.get("key"), labels.get("mode")
    if tonic:
        stated = keys_in(caption)
        if mode:
            out["key"] = {"status": _status(set(stated), (tonic, mode))}
        else:
            out["key"] = {"status": _status({t for t, _ in stated}, tonic)}
    if mode:
        out["mode"] = {"status": _status(modes_in(caption), mode)}
    if labels.get("time_signature"):
        out["time_signature"] = {"status": _status(metres_in(caption), labels["time_signature"])}
    instruments = labels.get("instruments")
    if isinstance(instruments, list) and instruments:
        truth = {canonical_instrument(i) for i in instruments}
        # Instruments outside musicllm.text_attributes' list ("theremin") count when named as they are.
        named = instruments_in(caption) | {t for t in truth - set(INSTRUMENTS) if mentions(caption.lower(), t)}
        hits = truth & named
        out["instruments"] = {"status": "not_stated" if not named else "correct" if hits else "wrong",
                              "recall": len(hits) / len(truth), "precision": len(hits) / len(named) if named else None}
    if isinstance(labels.get("genre"), str) and labels["genre"].strip():
        truth = canonical_genre(labels["genre"])
        unknown = truth not in GENRES and mentions(caption.lower().replace("-", " "), truth)
        stated = genres_in(caption) | ({truth} if unknown else set())
        out["genre"] = {"status": _status(stated, truth)}
    return out


def summarize_attributes(rows: list[dict]) -> dict[str, dict]:
    """attribute -> {n, correct, wrong, not_stated (rates)[, recall, precision]}."""
    counts = defaultdict(lambda: defaultdict(float))
    recalls, precisions = [], []
    for row in rows:
        for name, result in attribute_accuracy(row["caption"], row.get("labels") or {}).items():
            counts[name]["n"] += 1
            counts[name][result["status"]] += 1
            if name == "instruments":
                recalls.append(result["recall"])
                if result["precision"] is not None:
                    precisions.append(result["precision"])
    summary = {}
    for name in ATTRIBUTES:
        if name in counts:
            n = counts[name]["n"]
            summary[name] = {"n": int(n), **{s: counts[name][s] / n for s in STATUSES}}
    if "instruments" in summary:
        summary["instruments"]["recall"] = sum(recalls) / len(recalls)
        summary["instruments"]["precision"] = sum(precisions) / len(precisions) if precisions else None
    return summary


def score_captions(rows: list[dict], name: str = "") -> dict:
    with_refs = [r for r in rows if r.get("references")]
    metrics = {}
    if with_refs:
        metrics = caption_metrics([r["caption"] for r in with_refs], [r["references"] for r in with_refs])
    if not name:
        name = Path(str(rows[0].get("model") or "captions")).name if rows else "captions"
    return {"name": name,
            "n": len(rows), "n_with_references": len(with_refs), "metrics": metrics,
            "attributes": summarize_attributes(rows)}


def load_references(path: Path | None, tasks: list[str]) -> dict[str, list[str]]:
    """clip id -> reference captions, from a conversations JSONL."""
    refs: dict[str, list[str]] = defaultdict(list)
    if path is None or not path.is_file():
        return refs
    for record in read_jsonl(path):
        parts = str(record["id"]).rsplit(":", 2)  # "<clip id>:<task>:<k>"
        clip_id = parts[0] if len(parts) == 3 else record["id"]
        task = record.get("task")
        answers = [m["content"] for m in record.get("messages", []) if m.get("role") == "assistant"]
        if task in tasks and answers:
            refs[clip_id].append(answers[-1])
    return refs


def generate(args) -> int:
    """Phase 1: captions for the clips of the split, appended to args.out."""
    from tqdm import tqdm

    from eval.predict import generation_inputs
    from musicllm.checkpoint import default_device, load_checkpoint

    clips = [c for c in read_jsonl(args.manifest) if args.split == "all" or c.get("split", args.split) == args.split]
    clips = clips[: args.limit] if args.limit else clips
    done = {r["id"] for r in read_jsonl(args.out)}
    todo = [c for c in clips if c["id"] not in done]
    print(f"{len(clips)} clips ({args.split}), {len(clips) - len(todo)} already in {args.out}, {len(todo)} to caption")
    if not todo:
        return 0
    refs = load_references(args.references or args.manifest.parent / "captions.jsonl", args.reference_tasks)
    device = args.device or default_device()
    model, processor = load_checkpoint(args.checkpoint, dtype=args.dtype, device=device)
    with JsonlWriter(args.out) as writer, tqdm(total=len(todo), unit="clip", desc="captions") as bar:
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start:start + args.batch_size]
            paths = [str(Path(c["audio"]) if Path(c["audio"]).is_absolute() else args.manifest.parent / c["audio"])
                     for c in batch]
            inputs = generation_inputs(processor, [args.prompt] * len(batch), [processor.load_audio(p) for p in paths])
            new_tokens = model.generate(**inputs.to(model.device), max_new_tokens=args.max_new_tokens, do_sample=False,
                                        pad_token_id=processor.tokenizer.pad_token_id)
            for clip, path, ids in zip(batch, paths, new_tokens):
                writer.write({"id": clip["id"], "audio": path, "caption": processor.decode(ids).strip(),
                              "references": refs.get(clip["id"], []), "labels": clip.get("labels") or {},
                              "model": str(args.checkpoint), "prompt": args.prompt})
            bar.update(len(batch))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musicllm eval captions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="captions JSONL (written with --checkpoint; scored)")
    parser.add_argument("--checkpoint", type=Path, help="model folder; without it, only score --out")
    parser.add_argument("--manifest", type=Path, help="clip manifest: audio and true labels")
    parser.add_argument("--references", type=Path, help="conversations JSONL of reference captions "
                        "(default: captions.jsonl beside the manifest)")
    parser.add_argument("--reference-tasks", nargs="+", default=["caption"], help="tasks whose answers are references")
    parser.add_argument("--split", default="test", help="clips of this split, or 'all' (default test)")
    parser.add_argument("--limit", type=int, help="only the first N clips")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"the user's request (default {DEFAULT_PROMPT!r})")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="caption length limit (default 96)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per batch")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", default=None, help="weights dtype, e.g. bfloat16")
    parser.add_argument("--scores", type=Path, help="scores JSON to write (default: <out>.scores.json)")
    args = parser.parse_args(argv)
    try:
        if args.checkpoint:
            if not args.manifest:
                parser.error("--checkpoint needs --manifest")
            generate(args)
        rows = list(read_jsonl(args.out))
    except FormatError as err:
        print(f"musicllm eval captions: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(f"musicllm eval captions: {args.out}: no captions to score", file=sys.stderr)
        return 2
    run = score_captions(rows)
    for metric, value in run["metrics"].items():
        print(f"{metric:28s} {value:.4f}")
    for attribute, s in run["attributes"].items():
        print(f"{attribute:12s} n={s['n']:<5d} correct {s['correct']:.3f}  wrong {s['wrong']:.3f}  "
              f"not stated {s['not_stated']:.3f}")
    scores = args.scores or args.out.with_suffix(".scores.json")
    scores.write_text(json.dumps({"kind": "captioning", "runs": [run]}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {scores}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

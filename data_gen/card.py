"""`musicllm data card`: a dataset card, CARD.md and card.png, for a folder of generated data.

    musicllm data card data/corpus
    python -m data_gen.card data/corpus

Looks at every file under DIR and recognises, by content rather than name:
    clip manifests     JSONL whose records carry id, audio, duration, source, license
    conversations      JSONL whose records carry messages (captions.jsonl, instructions.jsonl, ...)
    multiple choice    CSV with MuChoMusic's question / correct_answer columns
Anything else (skipped.jsonl, import_errors.jsonl, caches, audio) is left alone. A clip listed in
several manifests counts once (the last one read wins).

CARD.md holds counts per split, source, licence, genre, key, tempo band, metre and mood (clips),
per task, stage, split and writer (conversations), and per dimension (multiple choice). Clip
counts use ground-truth labels; a clip without the label counts as "unknown". card.png
(matplotlib, Agg) shows tempo, key, genre and task histograms.
"""

from __future__ import annotations

import argparse
import ast
import csv
import sys
from collections import Counter
from pathlib import Path

from data_gen.formats import MANIFEST_REQUIRED, FormatError, read_jsonl
from musicllm.vocabulary import TEMPO_BANDS, tempo_band
from data_gen.writers.base import CAPTION_TASKS

UNKNOWN = "unknown"


def find_inputs(folder: Path) -> dict[str, list[Path]]:
    """{"manifests" | "conversations" | "mc": files}, recognised by their first record."""
    found = {"manifests": [], "conversations": [], "mc": []}
    for path in sorted(folder.rglob("*.jsonl")):
        first = next(read_jsonl(path), None)
        if not isinstance(first, dict):
            continue
        if "messages" in first:
            found["conversations"].append(path)
        elif all(field in first for field in MANIFEST_REQUIRED):
            found["manifests"].append(path)
    for path in sorted(folder.rglob("*.csv")):
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), [])
        if {"question", "correct_answer"} <= set(header):
            found["mc"].append(path)
    return found


def key_of(labels: dict) -> str:
    tonic, mode = labels.get("key"), labels.get("mode")
    if tonic and mode:
        return f"{tonic} {mode}"
    return tonic or (f"({mode})" if mode else UNKNOWN)


def band_of(labels: dict) -> str:
    try:
        return tempo_band(float(labels["tempo_bpm"]))
    except (KeyError, TypeError, ValueError):
        return UNKNOWN


def summarise(found: dict[str, list[Path]]) -> dict:
    clips = {}
    for path in found["manifests"]:
        for clip in read_jsonl(path):
            clips[clip["id"]] = clip
    labels = [c.get("labels") or {} for c in clips.values()]
    conversations = [r for path in found["conversations"] for r in read_jsonl(path)]
    questions = []
    for path in found["mc"]:
        with open(path, encoding="utf-8-sig", newline="") as f:
            questions += list(csv.DictReader(f))
    dimensions = Counter()
    for q in questions:
        for column in ("music_knowledge", "music_reasoning"):
            try:
                dimensions.update(ast.literal_eval(q.get(column) or "[]"))
            except (ValueError, SyntaxError):
                dimensions[f"(unreadable {column})"] += 1
    provenance = Counter(" / ".join(str((r.get("provenance") or {}).get(k, "?"))
                                    for k in ("writer", "model", "prompt_version")) for r in conversations)
    return {
        "files": found,
        "clips": len(clips),
        "hours": sum(float(c.get("duration", 0)) for c in clips.values()) / 3600,
        "tempi": [float(lab["tempo_bpm"]) for lab in labels if isinstance(lab.get("tempo_bpm"), (int, float))],
        "tables": {
            "Clips per split": Counter(c.get("split", UNKNOWN) for c in clips.values()),
            "Clips per source": Counter(c.get("source", UNKNOWN) for c in clips.values()),
            "Clips per licence": Counter(c.get("license", UNKNOWN) for c in clips.values()),
            "Clips per genre": Counter(lab.get("genre") or UNKNOWN for lab in labels),
            "Clips per key": Counter(key_of(lab) for lab in labels),
            "Clips per tempo band": Counter(band_of(lab) for lab in labels),
            "Clips per metre": Counter(lab.get("time_signature") or UNKNOWN for lab in labels),
            "Clips per mood": Counter(lab.get("mood") or UNKNOWN for lab in labels),
            "Conversations per task": Counter(r.get("task", UNKNOWN) for r in conversations),
            "Conversations per stage": Counter("stage 1 (captions)" if r.get("task") in CAPTION_TASKS
                                               else "stage 2 (instructions)" for r in conversations),
            "Conversations per split": Counter(r.get("split", UNKNOWN) for r in conversations),
            "Conversations per writer (writer / model / prompt version)": provenance,
            "Questions per dimension": dimensions,
            "Questions per dataset": Counter(q.get("dataset") or UNKNOWN for q in questions),
            "Questions flagged text-only guessable": Counter(
                "flagged" if (q.get("flags") or "").startswith("text_only_guessable") else "not flagged"
                for q in questions),
        },
        "conversations": len(conversations),
        "questions": len(questions),
    }


def table(title: str, counts: Counter) -> str:
    name = title.split(" per ")[-1] if " per " in title else "value"
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    rows = [f"| {str(value).replace('|', '/')} | {count} |" for value, count in ordered]
    return "\n".join([f"## {title}", "", f"| {name} | count |", "|---|---|", *rows, ""])


def render(summary: dict, folder: Path) -> str:
    files = summary["files"]
    listed = [f"- {kind}: " + (", ".join(p.relative_to(folder).as_posix() for p in paths) or "none")
              for kind, paths in files.items()]
    lines = [f"# Dataset card: {folder.name or folder.resolve().name}", "",
             f"- clips: {summary['clips']} ({summary['hours']:.2f} hours of audio)",
             f"- conversations: {summary['conversations']}", f"- multiple-choice questions: {summary['questions']}",
             "", "Read from:", *listed, "", "Clip counts use ground-truth labels (MIR estimates are not counted).",
             "", "![histograms](card.png)", ""]
    for title, counts in summary["tables"].items():
        if counts:
            lines.append(table(title, counts))
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = summary["tables"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels = [("Tempo (BPM)", None), ("Keys", tables["Clips per key"]), ("Genres", tables["Clips per genre"]),
              ("Tasks", tables["Conversations per task"])]
    for ax, (title, counts) in zip(axes.flat, panels):
        ax.set_title(title)
        if counts is None and summary["tempi"]:
            ax.hist(summary["tempi"], bins=20, color="#4c72b0")
            for upper, _ in TEMPO_BANDS[:-1]:  # band edges, as the card's tempo-band table counts them
                ax.axvline(upper, color="grey", linestyle=":", linewidth=1)
            ax.set_ylabel("clips")
        elif counts:
            items = sorted(counts.items(), key=lambda kv: -kv[1])[:24]
            ax.bar([str(k) for k, _ in items], [v for _, v in items], color="#55a868")
            ax.tick_params(axis="x", labelrotation=60, labelsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musicllm data card", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="folder holding manifests, conversations and MC CSVs")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"musicllm data card: {args.folder}: not a folder", file=sys.stderr)
        return 2
    try:
        summary = summarise(find_inputs(args.folder))
    except FormatError as err:
        print(f"musicllm data card: {err}", file=sys.stderr)
        return 2
    (args.folder / "CARD.md").write_text(render(summary, args.folder), encoding="utf-8")
    plot(summary, args.folder / "card.png")
    print(f"{args.folder / 'CARD.md'}: {summary['clips']} clips, {summary['conversations']} conversations, "
          f"{summary['questions']} questions; histograms in {args.folder / 'card.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How often the MIR estimates (musicllm.analysis) agree with the ground-truth labels, and how
fast annotation runs.

    python -m eval.benchmarks.mir_agreement data/corpus/manifest.annotated.jsonl
    python -m eval.benchmarks.mir_agreement data/corpus/manifest.jsonl --limit 60   # annotates in-process
    python -m eval.benchmarks.mir_agreement M.jsonl --out eval/benchmarks/results/mir_agreement.json

Scoring only reads the two fields a manifest keeps apart, `labels` (truth) and `estimates`;
records without estimates are annotated here first, in this one process. Per attribute, over
the clips that have the label (clips whose audio could not be analysed are counted apart):
    tempo         |estimate - truth| <= 4% of truth
    tempo_octave  the same, also accepting truth x2 or x0.5 (the beat tracker's octave errors)
    key           tonic and mode exact
    key_close     exact, or a neighbour: dominant/subdominant (same mode), relative, parallel
    key_mirex     MIREX weighted score: 1 exact, 0.5 fifth, 0.3 relative, 0.2 parallel, 0 other
    mode          major/minor right
    metre         time signature exact ("3/4", "4/4", "6/8")
    chords        share of the labelled chord time (sampled every 50 ms) where the estimated
                  chord equals the true one reduced to a triad (MIREX "majmin": C7 and Cmaj7 are
                  C, Cm7 is Cm; diminished, half-diminished, sus and aug chords are left out)
The same table per `labels.genre` and per `labels.time_signature` when clips carry them. Speed is seconds of audio per wall
second for `analyze_file` (decode, resample and analysis) in a single process with one BLAS
thread, after a warm-up call that pays librosa's numba compilation; with every clip already
annotated, up to --speed-clips clips are analysed again just to time them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from eval.benchmarks import write_results

DEFAULT_OUT = "eval/benchmarks/results/mir_agreement.json"
TEMPO_TOLERANCE = 0.04
PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
MIREX_WEIGHTS = {"exact": 1.0, "fifth": 0.5, "relative": 0.3, "parallel": 0.2, "other": 0.0}
COLUMNS = ["tempo", "tempo_octave", "key", "key_close", "key_mirex", "mode", "metre", "chords"]
MAJOR_QUALITIES = {"", "maj", "maj7", "7", "6", "maj9", "9", "add9"}
MINOR_QUALITIES = {"m", "min", "m7", "m6", "m9"}
CHORD_STEP = 0.05  # seconds between the instants at which chords are compared


def tempo_agrees(estimate: float | None, truth: float, octaves: bool = False) -> bool:
    if estimate is None:
        return False
    targets = (truth, 2 * truth, truth / 2) if octaves else (truth,)
    return any(abs(estimate - target) <= TEMPO_TOLERANCE * target for target in targets)


def key_relation(est_key, est_mode, true_key, true_mode) -> str:
    """"exact", "fifth", "relative", "parallel" or "other" (also for a missing estimate)."""
    if est_key not in PITCH_CLASSES or est_mode not in ("major", "minor"):
        return "other"
    interval = (PITCH_CLASSES.index(est_key) - PITCH_CLASSES.index(true_key)) % 12
    if est_mode == true_mode:
        return {0: "exact", 5: "fifth", 7: "fifth"}.get(interval, "other")
    if interval == 0:
        return "parallel"
    # C major's relative is A minor: the minor tonic lies 9 semitones above the major one.
    relative = 9 if true_mode == "major" else 3
    return "relative" if interval == relative else "other"


def triad(chord: str) -> str | None:
    """"Cm7" -> "Cm", "A#maj7" -> "A#", "N" -> "N"; None for a chord that is neither major nor
    minor (dim, m7b5, sus, aug) or that does not parse."""
    if chord == "N":
        return "N"
    root = chord[:2] if chord[1:2] == "#" else chord[:1]
    quality = chord[len(root):]
    if root not in PITCH_CLASSES:
        return None
    if quality in MAJOR_QUALITIES:
        return root
    return root + "m" if quality in MINOR_QUALITIES else None


def chord_overlap(truth: list[dict], estimate: list[dict]) -> float | None:
    """Share of the instants (every CHORD_STEP s of the labelled, triad-reducible chords) at
    which the estimated chord is the true triad; None when no labelled instant counts."""
    import bisect

    starts = [c["start"] for c in estimate]
    agree = total = 0
    for chord in truth:
        expected = triad(chord["chord"])
        if expected is None:
            continue
        t = chord["start"] + CHORD_STEP / 2
        while t < chord["end"]:
            i = bisect.bisect_right(starts, t) - 1
            found = estimate[i]["chord"] if i >= 0 and t < estimate[i]["end"] else "N"
            agree += found == expected
            total += 1
            t += CHORD_STEP
    return agree / total if total else None


def clip_scores(labels: dict, estimates: dict) -> dict:
    """Per attribute: 1.0/0.0 agreement (key_mirex: its weight), only for labelled attributes."""
    scores = {}
    if labels.get("tempo_bpm"):
        scores["tempo"] = float(tempo_agrees(estimates.get("tempo_bpm"), labels["tempo_bpm"]))
        scores["tempo_octave"] = float(tempo_agrees(estimates.get("tempo_bpm"), labels["tempo_bpm"], octaves=True))
    if labels.get("key") in PITCH_CLASSES and labels.get("mode"):
        relation = key_relation(estimates.get("key"), estimates.get("mode"), labels["key"], labels["mode"])
        scores["key"] = float(relation == "exact")
        scores["key_close"] = float(relation != "other")
        scores["key_mirex"] = MIREX_WEIGHTS[relation]
        scores["key_relation"] = relation
    if labels.get("mode"):
        scores["mode"] = float(estimates.get("mode") == labels["mode"])
    if labels.get("time_signature"):
        scores["metre"] = float(estimates.get("time_signature") == labels["time_signature"])
    if labels.get("chords"):
        overlap = chord_overlap(labels["chords"], estimates.get("chords") or [])
        if overlap is not None:
            scores["chords"] = overlap
    return scores


def summarise(per_clip: list[dict]) -> dict:
    """{column: {"n", "rate"}} over clips' score dicts."""
    table = {}
    for column in COLUMNS:
        values = [scores[column] for scores in per_clip if column in scores]
        table[column] = {"n": len(values), "rate": round(sum(values) / len(values), 4) if values else None}
    return table


def score(records: list[dict]) -> dict:
    usable = [r for r in records if r.get("estimates") and "error" not in r["estimates"]]
    per_clip = [clip_scores(r.get("labels", {}), r["estimates"]) for r in usable]
    result = {"clips": len(records), "unusable": len(records) - len(usable), "all": summarise(per_clip)}
    for group, label in (("by_genre", "genre"), ("by_metre", "time_signature")):
        members = defaultdict(list)
        for record, scores in zip(usable, per_clip):
            if record.get("labels", {}).get(label):
                members[record["labels"][label]].append(scores)
        result[group] = {name: summarise(scores) for name, scores in sorted(members.items())}
    result["key_relations"] = dict(Counter(s["key_relation"] for s in per_clip if "key_relation" in s))
    return result


def read_manifest(path: Path) -> list[dict]:
    """The records of a JSONL manifest (eval may not import data_gen, which owns the format)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def annotate_and_time(records: list[dict], base_dir: Path, speed_clips: int) -> dict:
    """Fill in missing estimates in place ({"error": reason} for unusable audio); time
    analyze_file on those clips, or on up to `speed_clips` clips when none was missing."""
    import numpy as np

    from musicllm.analysis import SAMPLE_RATE, analyze, analyze_file
    from musicllm.audio import AudioError

    started = time.perf_counter()
    analyze(np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE).astype(np.float32) * 0.1, SAMPLE_RATE)
    warmup = time.perf_counter() - started
    missing = [r for r in records if not r.get("estimates")]
    timed = missing or records[:speed_clips]
    wall = audio = 0.0
    for record in timed:
        path = Path(record["audio"]) if Path(record["audio"]).is_absolute() else base_dir / record["audio"]
        started = time.perf_counter()
        try:
            estimates = analyze_file(path, max_seconds=None)
            audio += float(record["duration"])
        except AudioError as err:
            estimates = {"error": str(err)}
        wall += time.perf_counter() - started
        if missing:
            record["estimates"] = estimates
    return {
        "clips": len(timed), "audio_seconds": round(audio, 2), "wall_seconds": round(wall, 3),
        "x_realtime": round(audio / wall, 1) if wall else None, "warmup_seconds": round(warmup, 2),
        "processes": 1, "blas_threads": os.environ.get("OMP_NUM_THREADS"),
        "reannotated": not missing,
    }


def print_table(result: dict) -> None:
    header = f"{'clips':22s} {'n':>4s} " + " ".join(f"{c:>12s}" for c in COLUMNS)
    print(header + "\n" + "-" * len(header))
    groups = [("all", result["all"])]
    groups += [(f"genre {name}", table) for name, table in result["by_genre"].items()]
    groups += [(f"metre {name}", table) for name, table in result["by_metre"].items()]
    for name, table in groups:
        n = max(cell["n"] for cell in table.values())
        cells = " ".join(f"{'-' if c['rate'] is None else format(c['rate'], '.0%'):>12s}" for c in table.values())
        print(f"{name[:22]:22s} {n:4d} {cells}")
    speed = result["speed"]
    print(f"\nkey estimates by relation to the truth: {result['key_relations']}")
    print(f"unusable clips: {result['unusable']} of {result['clips']}")
    print(f"annotation speed: {speed['x_realtime']}x realtime, one process ({speed['audio_seconds']} s of audio "
          f"in {speed['wall_seconds']} s; warm-up {speed['warmup_seconds']} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.benchmarks.mir_agreement",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path, help="clip manifest with labels (annotated or not)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N clips")
    parser.add_argument("--speed-clips", type=int, default=10,
                        help="clips to re-analyse for timing when all are annotated already")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help="JSON results file")
    args = parser.parse_args(argv)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")  # before numpy loads: a single-threaded measurement

    if not args.manifest.is_file():
        print(f"error: {args.manifest}: manifest not found", file=sys.stderr)
        return 2
    records = read_manifest(args.manifest)[: args.limit]
    speed = annotate_and_time(records, args.manifest.parent, args.speed_clips)
    corpus_config = args.manifest.parent / "synth_config.json"  # written by `musicllm data synth`
    result = {"manifest": str(args.manifest), **score(records), "speed": speed,
              "corpus_config": json.loads(corpus_config.read_text()) if corpus_config.is_file() else None,
              "tempo_tolerance": TEMPO_TOLERANCE,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    print_table(result)
    write_results(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

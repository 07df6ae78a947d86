"""The evaluation report: markdown tables and PNG plots from score files.

    musicllm eval report scores.json caps.scores.json --out report/
    python -m eval.report ...                                  # the same

Reads the JSON that `musicllm eval score` (multiple choice), `musicllm eval captions`
(captioning) and `musicllm eval follow --score` (free-text answers) write, and writes into --out:
    REPORT.md                    free-text answers per question kind, accuracy per run and scorer, whether each model listens (its
                                 accuracy under every audio mode, and the gap to no audio against
                                 its noise), per dimension, genre and question type, flagged
                                 questions apart, captioning metrics and attribute scores
    accuracy_by_dimension.png    accuracy per MuChoMusic dimension, one bar per run (with and
                                 without audio side by side), chance at 25%
    confusion_<run>_<key|tempo>.png   true value against the value of the chosen option
Plots use each run's primary scorer (the MIR baseline's own choice, else our robust parser,
else log-likelihood). This module knows nothing about models or predictions files.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from data_gen.formats import KNOWLEDGE, REASONING
from musicllm.vocabulary import MODES, PITCH_CLASSES, TEMPO_BANDS
from eval.score import OTHER, SCORERS, UNANSWERED

SCORER_NAMES = {"muchomusic": "MuChoMusic parser", "robust": "robust parser", "loglik": "log-lik (sum)",
                "loglik_mean": "log-lik (mean)", "cloze": "cloze (option text)", "choice": "MIR choice"}
MODE_ORDER = ["audio", "none", "noise", "other"]
CHANCE = 0.25


def pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "run"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def primary_accuracy(run: dict, scores: dict | None = None) -> float | None:
    scores = run["scorers"] if scores is None else scores
    return scores.get(run["primary"], {}).get("accuracy")


def overall_section(runs: list[dict]) -> str:
    used = [s for s in SCORERS if any(s in r["scorers"] for r in runs)]
    header = (["run", "audio", "n"] + [f"acc. {SCORER_NAMES[s]}" for s in used]
              + ["answered (MuChoMusic)", "answered (robust)", "± (95%)"])
    rows = []
    for r in runs:
        answered = [pct(r["scorers"].get(s, {}).get("answered")) for s in ("muchomusic", "robust")]
        accuracies = [pct(r["scorers"].get(s, {}).get("accuracy")) for s in used]
        rows.append([r["name"], r.get("audio_mode") or "–", r["n"]] + accuracies + answered + [margin(r["n"])])
    return ("## Multiple choice: accuracy (%)\n\nUnanswered counts as wrong; chance is 25%. \"Answered\" is the "
            "instruction-following rate: outputs that parse to an option. \"±\" is how far chance alone may move "
            "an accuracy of the run from the model's own rate (95%, at most: at an accuracy of 50%): a quick "
            "look at 40 questions is a rate give or take 15 points.\n\n" + md_table(header, rows))


def margin(n: int) -> str:
    """The 95% margin of a proportion over `n` questions at its widest (p = 0.5), in points."""
    return f"±{100 * 1.96 * math.sqrt(0.25 / n):.1f}" if n else "–"


def listening_section(runs: list[dict]) -> str:
    """Per model and scorer (the primary one, and cloze: the option text's likelihood, whatever format
    the model answers in), the accuracy under each audio mode and the audio − none gap. Not loglik:
    it scores "(B) option text", a letter a model taught to answer with the text alone (the default,
    training/recipe.py) gives no weight, so its gap says nothing of listening there (AN: +7.5 points
    where cloze said +57.5); the accuracy table keeps it."""
    by_model: dict[str, dict[str, dict]] = {}
    for r in runs:
        by_model.setdefault(str(r.get("model")), {})[r.get("audio_mode")] = r
    rows = []
    for model, modes in by_model.items():
        if len(modes) < 2 or "audio" not in modes:
            continue
        audio = modes["audio"]
        for scorer in dict.fromkeys([audio["primary"], "cloze"]):
            if scorer not in audio["scorers"]:
                continue
            acc = {m: r["scorers"].get(scorer, {}).get("accuracy") for m, r in modes.items()}
            verdict = "–"
            if acc.get("none") is not None:
                a, b = acc["audio"], acc["none"]
                # Two binomial proportions: a gap under ~2 standard errors may be chance.
                se = math.sqrt(max(a * (1 - a), 1e-9) / audio["n"] + max(b * (1 - b), 1e-9) / modes["none"]["n"])
                verdict = f"{100 * (a - b):+.1f} points: " + (
                    "listens" if a - b > 2 * se else "no evidence that it listens (same without audio)")
            rows.append([Path(model).name, SCORER_NAMES[scorer]] + [pct(acc.get(m)) for m in MODE_ORDER] + [verdict])
    if not rows:
        return ""
    return ("## Does the model listen?\n\nAccuracy (%) with the clip's audio, without audio, with noise of the same "
            "length and loudness, and with another question's clip. A model that scores the same without the audio "
            "is answering from the text.\n\n" + md_table(["model", "scorer", *MODE_ORDER, "audio − none"], rows))


def breakdown_section(runs: list[dict], table: str, title: str, order: list[str] | None = None) -> str:
    groups = sorted({g for r in runs for g in r["breakdown"].get(table, {})},
                    key=lambda g: (order.index(g) if order and g in order else len(order or []), g))
    if not groups:
        return ""
    # Each run's primary scorer, and the log-likelihood ones beside it where the run has them: a small model
    # that cannot yet write its answer in the format still shows what it knows there.
    columns = [(r, s) for r in runs for s in dict.fromkeys([r["primary"], "loglik", "cloze"]) if s in r["scorers"]]
    rows = []
    for g in groups:
        cells = []
        for r, scorer in columns:
            cell = r["breakdown"].get(table, {}).get(g)
            cells.append(f"{pct(cell.get(scorer, {}).get('accuracy'))} (n={cell['n']})" if cell else "–")
        rows.append([g] + cells)
    header = [table] + [f"{r['name']} ({SCORER_NAMES[s]})" for r, s in columns]
    return (f"## {title}\n\nAccuracy (%) with each run's primary scorer, and with log-likelihood ranking "
            "(with the letter, and the option text alone: cloze) where the run has it.\n\n" + md_table(header, rows))


def captioning_section(runs: list[dict]) -> str:
    if not runs:
        return ""
    metrics = list(dict.fromkeys(m for r in runs for m in r["metrics"]))
    parts = ["## Captioning"]
    if metrics:
        parts.append(md_table(["run", "n (with references)"] + metrics,
                              [[r["name"], r["n_with_references"]] + [f"{r['metrics'].get(m, 0):.4f}" for m in metrics]
                               for r in runs]))
    rows = []
    for r in runs:
        for attribute, s in r["attributes"].items():
            extra = (f"recall {pct(s.get('recall'))}, precision {pct(s.get('precision'))}"
                     if attribute == "instruments" else "")
            rows.append([r["name"], attribute, s["n"], pct(s["correct"]), pct(s["wrong"]), pct(s["not_stated"]), extra])
    if rows:
        parts.append("Attribute score: does the caption state the labelled attribute correctly (%)?\n\n" +
                     md_table(["run", "attribute", "n", "correct", "wrong", "not stated", ""], rows))
    return "\n\n".join(parts)


def plot_dimensions(runs: list[dict], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = [d for d in KNOWLEDGE + REASONING if any(d in r["breakdown"].get("knowledge", {}) or
                                                    d in r["breakdown"].get("reasoning", {}) for r in runs)]
    if not dims:
        return False
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(dims) + 2), 4.5))
    for k, r in enumerate(runs):
        cells = {**r["breakdown"].get("knowledge", {}), **r["breakdown"].get("reasoning", {})}
        values = [primary_accuracy(r, cells[d]) if d in cells else 0.0 for d in dims]
        ax.bar([i + (k - (len(runs) - 1) / 2) * width for i in range(len(dims))], values, width, label=r["name"])
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(dims)), dims, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per dimension, by run (audio mode)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def confusion_labels(kind: str, seen: set[str]) -> list[str]:
    if kind == "key":
        order = [f"{p} {m}" for m in MODES for p in PITCH_CLASSES]
    else:
        order = [name for _, name in TEMPO_BANDS]
    order += [OTHER, UNANSWERED]
    return [label for label in order if label in seen] + sorted(seen - set(order))


def plot_confusion(cells: dict[str, int], kind: str, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pairs = {tuple(key.split("|", 1)): n for key, n in cells.items()}
    rows = confusion_labels(kind, {t for t, _ in pairs})
    cols = confusion_labels(kind, {c for _, c in pairs})
    matrix = np.zeros((len(rows), len(cols)), dtype=int)
    for (truth, chosen), n in pairs.items():
        matrix[rows.index(truth), cols.index(chosen)] = n
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(cols) + 2), max(3.5, 0.4 * len(rows) + 1.5)))
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1, int(matrix.max())))
    for i in range(len(rows)):
        for j in range(len(cols)):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xlabel("value of the chosen option")
    ax.set_ylabel("true value")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def follow_section(follows: list[dict]) -> str:
    """Free-text answers (eval/follow.py): does each answer respond to the kind asked, is it right."""
    if not follows:
        return ""
    parts = ["## Free-text answers: does the answer respond to the question asked?",
             "Each question kind asked once per clip, in wordings the training data does not use; "
             "rates in %. \"Responds\": the answer states what was asked (a key when asked the key); "
             "\"right\": against the clip's labels, over gradable answers; \"distinct\": different "
             "answers over answers; \"repeats\": answers that repeat a sentence or a 4-word phrase, name "
             "one thing twice in a list, or (about a clip) state its tempo, key, mode or metre in two sentences."]
    for scores in follows:
        if (quiet := scores.get("not_music")):
            parts.append(f"`{scores.get('file')}`, clips of silence and noise ({quiet['clips']}, {quiet['n']} answers, "
                         f"every kind but theory): the answer says the clip is not music in {pct(quiet['recognised'])}%, "
                         f"and names what it is (silence, noise) in {pct(quiet['right'])}%.")
        if scores["overall"] is None:
            continue
        rows = [[kind, str(k["n"]), pct(k.get("responds")), pct(k.get("correct")), pct(k.get("distinct")),
                 pct(k.get("repeats"))] for kind, k in scores["kinds"].items()]
        o = scores["overall"]
        rows.append(["**all**", str(o["n"]), pct(o["responds"]), "", "", pct(o["repeats"])])
        disagree = (f" Its caption and its answer to the key, mode, tempo or metre question disagreed on "
                    f"{o['clips_contradicting']} of {o['clips_compared']}." if o.get("clips_compared") else "")
        no_music = (f" Answers that said the music holds no music (silence or noise): {o['says_no_music']}."
                    if o.get("says_no_music") is not None else "")
        parts.append(f"`{scores.get('file')}`: {o['clips']} clips; two kinds got the same answer on "
                     f"{o['clips_with_shared_answer']} of them.{disagree}{no_music}\n\n"
                     + md_table(["kind", "n", "responds", "right", "distinct", "repeats"], rows))
    return "\n\n".join(parts)


def load_runs(paths: list[Path]) -> tuple[list[dict], list[dict], list[dict]]:
    mc, captions, follows = [], [], []
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("kind") == "multiple_choice":
            mc += data["runs"]
        elif data.get("kind") == "captioning":
            captions += data["runs"]
        elif data.get("kind") == "follow":
            follows.append(data)
        else:
            raise ValueError(f"{path}: not a score file (kind {data.get('kind')!r})")
    mode_rank = {m: i for i, m in enumerate(MODE_ORDER)}
    mc.sort(key=lambda r: (str(r.get("model")), mode_rank.get(r.get("audio_mode"), 9)))
    return mc, captions, follows


def write_report(paths: list[Path], out: Path) -> Path:
    mc, captions, follows = load_runs(paths)
    out.mkdir(parents=True, exist_ok=True)
    sections = ["# Evaluation report", "Sources: " + ", ".join(f"`{p}`" for p in paths), follow_section(follows)]
    if mc:
        sections += [overall_section(mc), listening_section(mc)]
        if plot_dimensions(mc, out / "accuracy_by_dimension.png"):
            sections.append("![accuracy per dimension](accuracy_by_dimension.png)")
        sections += [breakdown_section(mc, "knowledge", "Per music-knowledge dimension", KNOWLEDGE),
                     breakdown_section(mc, "reasoning", "Per music-reasoning dimension", REASONING),
                     breakdown_section(mc, "genre", "Per genre"),
                     breakdown_section(mc, "question_type", "Per question type"),
                     breakdown_section(mc, "flagged", "Text-only-guessable questions apart")]
        figures = []
        for r in mc:
            for kind, cells in r.get("confusion", {}).get(r["primary"], {}).items():
                name = f"confusion_{slug(r['name'])}_{kind}.png"
                plot_confusion(cells, kind, f"{r['name']}: {kind} ({SCORER_NAMES[r['primary']]})", out / name)
                figures.append(f"![{r['name']} {kind}]({name})")
        if figures:
            sections.append("## Confusions (key and tempo questions)\n\n" + "\n".join(figures))
    sections.append(captioning_section(captions))
    report = out / "REPORT.md"
    report.write_text("\n\n".join(s for s in sections if s) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musicllm eval report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scores", nargs="+", type=Path, help="score JSON files (eval score / captions / follow)")
    parser.add_argument("--out", required=True, type=Path, help="folder for REPORT.md and the PNGs")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.scores, args.out)
    except (OSError, ValueError, KeyError) as err:
        print(f"musicllm eval report: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

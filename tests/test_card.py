"""`musicllm data card`: counts in CARD.md match the files, and card.png is a real PNG."""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter
from pathlib import Path

from data_gen.formats import assign_split, read_jsonl
from musicllm.vocabulary import PITCH_CLASSES, tempo_band
from data_gen.writers.phrases import PROMPT_VERSION

GENRES = ["rock", "jazz", "classical chamber", "folk"]


def clip(i: int, rng: random.Random) -> dict:
    family = f"fam-{i // 2}"
    return {
        "id": f"proc-{i:05d}", "audio": f"audio/proc-{i:05d}.wav", "duration": 30.0, "source": "procedural",
        "license": "CC0-1.0", "family": family, "split": assign_split(family),
        "labels": {"tempo_bpm": round(rng.uniform(55, 175), 1), "key": rng.choice(PITCH_CLASSES),
                   "mode": rng.choice(["major", "minor"]), "time_signature": rng.choice(["3/4", "4/4", "6/8"]),
                   "instruments": ["acoustic grand piano", "drum kit"], "genre": rng.choice(GENRES),
                   "mood": rng.choice(["happy", "sad", "calm"]), "dynamics": "medium"},
        "estimates": {},
    }


def table(card: str, title: str) -> dict[str, int]:
    section = card.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^\| (.+?) \| (\d+) \|$", section, re.M)}


def test_card_counts_match_the_files(tmp_path):
    from musicllm.cli import main as cli_main

    rng = random.Random(0)
    clips = [clip(i, rng) for i in range(30)]
    clips.append({"id": "user-1", "audio": "/abs/x.mp3", "duration": 12.0, "source": "user", "license": "unknown",
                  "split": "train", "labels": {}, "metadata": {"title": "t"}})
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(c) + "\n" for c in clips))
    assert cli_main(["data", "write", str(manifest), "--tasks", "caption", "qa_factual", "qa_reasoning"]) == 0
    assert cli_main(["data", "mc", str(manifest), "--split", "all", "--per-clip", "2"]) == 0
    assert cli_main(["data", "card", str(tmp_path)]) == 0

    card = (tmp_path / "CARD.md").read_text()
    labels = [c["labels"] for c in clips]
    assert table(card, "Clips per split") == Counter(c["split"] for c in clips)
    assert table(card, "Clips per genre") == Counter(lab.get("genre", "unknown") for lab in labels)
    assert table(card, "Clips per key") == Counter(f"{lab['key']} {lab['mode']}" if lab else "unknown" for lab in labels)
    assert table(card, "Clips per tempo band") == Counter(tempo_band(lab["tempo_bpm"]) if lab else "unknown" for lab in labels)
    assert table(card, "Clips per metre") == Counter(lab.get("time_signature", "unknown") for lab in labels)
    conversations = list(read_jsonl(tmp_path / "captions.jsonl")) + list(read_jsonl(tmp_path / "instructions.jsonl"))
    assert table(card, "Conversations per task") == Counter(r["task"] for r in conversations)
    assert table(card, "Conversations per writer (writer / model / prompt version)") == {
        f"template / rules / {PROMPT_VERSION}": len(conversations)}
    with open(tmp_path / "multiple_choice.csv", newline="") as f:
        questions = list(csv.DictReader(f))
    assert sum(table(card, "Questions per dataset").values()) == len(questions) > 0
    assert f"- clips: {len(clips)} " in card and f"- conversations: {len(conversations)}" in card
    assert "skipped.jsonl" not in card  # a log, not a dataset file

    png = (tmp_path / "card.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    import matplotlib.image

    assert matplotlib.image.imread(str(tmp_path / "card.png")).ndim == 3


def test_empty_folder_still_gets_a_card(tmp_path):
    from data_gen.card import main

    assert main([str(tmp_path)]) == 0
    assert "- clips: 0 " in (tmp_path / "CARD.md").read_text()
    assert Path(tmp_path / "card.png").read_bytes()[:4] == b"\x89PNG"
    assert main([str(tmp_path / "missing")]) == 2

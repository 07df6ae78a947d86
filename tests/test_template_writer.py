"""The template writer (wording from facts only) and `musicllm data write` (files, resuming, paths)."""

from __future__ import annotations

import json
import random
import re
import sys
import types
from pathlib import Path

import pytest

from data_gen.formats import assign_split, read_jsonl, validate_conversation
from musicllm.vocabulary import PITCH_CLASSES
from data_gen.write import main as write_main
from data_gen.write import relocate_audio
from data_gen.writers.base import CAPTION_TASKS, INSTRUCTION_TASKS, TASKS, Skip
from data_gen.writers.phrases import PROMPT_VERSION, instrument_name
from data_gen.writers.template import TemplateWriter

GENRES = ["rock", "jazz", "classical chamber", "electronic dance", "folk", "ambient", "latin", "funk"]
MOODS = ["happy", "energetic", "calm", "sad", "tense", "dreamy", "playful", "dark"]
INSTRUMENTS = ["acoustic grand piano", "electric bass (finger)", "drum kit", "violin", "flute",
               "electric guitar (clean)", "string ensemble 1", "trumpet"]


def procedural_clip(i: int, rng: random.Random) -> dict:
    """A manifest record in the shape of the procedural corpus."""
    bounds = sorted(rng.sample(range(2, 20), 3))
    names = rng.choice([["intro", "verse", "chorus", "outro"], ["A", "B", "A", "coda"], ["intro", "theme", "variation", "outro"]])
    edges = [0, *bounds, 24]
    family = f"fam-{i // 3}"
    return {
        "id": f"proc-{i:05d}", "audio": f"audio/proc-{i:05d}.wav", "duration": 24.0, "source": "procedural",
        "license": "CC0-1.0", "family": family, "split": assign_split(family),
        "labels": {
            "tempo_bpm": round(rng.uniform(50, 180), 1), "key": rng.choice(PITCH_CLASSES),
            "mode": rng.choice(["major", "minor"]), "time_signature": rng.choice(["3/4", "4/4", "6/8"]),
            "instruments": rng.sample(INSTRUMENTS, rng.randint(1, 4)), "genre": rng.choice(GENRES),
            "mood": rng.choice(MOODS), "dynamics": rng.choice(["soft", "medium", "loud"]),
            "sections": [{"name": n, "start": float(a), "end": float(b)} for n, a, b in zip(names, edges, edges[1:])],
            "chords": [{"start": 0.0, "end": 2.0, "chord": "C"}], "drums": True,
        },
        "estimates": {},
    }


def corpus(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [procedural_clip(i, rng) for i in range(n)]


def answers(records) -> list[str]:
    return [r["messages"][-1]["content"] for r in records if not isinstance(r, Skip)]


# ---- the writer ----

def test_records_are_valid_for_every_task():
    clips = corpus(12)
    records = list(TemplateWriter().write(clips, TASKS, seed=0))
    assert not [r for r in records if isinstance(r, Skip)]
    assert len(records) == len(clips) * len(TASKS)
    for r in records:
        validate_conversation(r)
        assert r["provenance"] == {"writer": "template", "model": "rules", "prompt_version": PROMPT_VERSION, "seed": 0}
        assert r["audio"] == [next(c["audio"] for c in clips if c["id"] == r["clip_id"])]
        assert r["messages"][0]["content"].startswith("<|audio|>\n")
    assert {r["task"] for r in records} == set(TASKS)


def test_same_seed_same_words_and_batch_does_not_matter():
    clips = corpus(6)
    writer = TemplateWriter()
    batch = list(writer.write(clips, TASKS, seed=3))
    assert batch == list(TemplateWriter().write(clips, TASKS, seed=3))
    alone = [r for clip in clips[::-1] for r in writer.write([clip], TASKS, seed=3)]
    assert sorted(batch, key=lambda r: r["id"]) == sorted(alone, key=lambda r: r["id"])
    other = list(writer.write(clips, TASKS, seed=4))
    assert answers(batch) != answers(other)


def test_wording_varies():
    records = list(TemplateWriter().write(corpus(60), TASKS, seed=0))
    for task in TASKS:
        texts = [r["messages"][-1]["content"] for r in records if r["task"] == task]
        # Captions state every fact, so no two clips share one; a short answer ("It feels sad.") may repeat.
        assert len(set(texts)) >= (len(texts) if task in CAPTION_TASKS else 0.6 * len(texts)), task
        openings = {re.split(r"[ ,.:]", t)[:3][1] if task != "attributes" else t[:2] for t in texts}
        assert len(openings) >= 2, task
    questions = {r["messages"][0]["content"] for r in records if r["task"] in INSTRUCTION_TASKS}
    assert len(questions) >= 25


def test_consecutive_seeds_ask_about_different_topics():
    clip = corpus(1)[0]
    questions = [r["messages"][0]["content"] for seed in range(6)
                 for r in TemplateWriter().write([clip], ["qa_factual"], seed=seed)]
    assert len(set(questions)) == 6


def test_a_word_two_kinds_share_is_asked_about_both_so_it_cannot_decide_the_answer():
    # With "beats" only in metre questions, the default model answered "Roughly how many beats per
    # minute does this go at?" with "It is in 4/4, with four beats to the bar."
    answers = []
    for clip in corpus(4):
        for seed in range(40):
            for r in TemplateWriter().write([clip], ["qa_factual"], seed=seed):
                if re.search(r"\bbeats\b", r["messages"][0]["content"]):
                    answers.append(r["messages"][-1]["content"])
    assert any("BPM" in a for a in answers), answers  # a tempo question with "beats"
    assert any(re.search(r"\b[2-9]/[48]\b", a) for a in answers), answers  # and a metre question


KEY_WORDS = re.compile(r"\b(major|minor|key|tonal|[A-G]#?(?= (major|minor)))\b", re.I)
INSTRUMENT_WORDS = re.compile(r"\b(piano|bass|drum|guitar|violin|flute|trumpet|string|instrument\w*|played on|features?)\b", re.I)
OTHER_WORDS = re.compile(r"\b(jazz|rock|folk|funk|genre|style|mood|happy|sad|calm|3/4|4/4|6/8|metre|time signature|"
                         r"dynamics|soft|loud|intro|verse|chorus|section)\b", re.I)


def test_only_tempo_means_only_tempo():
    clip = {"id": "t1", "audio": "a.wav", "duration": 10.0, "source": "procedural", "license": "x",
            "labels": {"tempo_bpm": 120.0}}
    for seed in range(8):
        records = list(TemplateWriter().write([clip], TASKS, seed=seed))
        for r in records:
            if isinstance(r, Skip):
                assert r.task in INSTRUCTION_TASKS
                continue
            text = " ".join(m["content"] for m in r["messages"])
            assert "120 BPM" in text or "BPM" in r["messages"][0]["content"] or r["task"] == "qa_reasoning"
            for pattern in (KEY_WORDS, INSTRUMENT_WORDS, OTHER_WORDS):
                assert not pattern.search(text), (r["task"], text)


def test_a_mode_answer_names_the_mode_and_no_tonic_so_it_is_never_the_key_answer():
    # With the tonic in both ("It is in a minor key (B minor)." beside "It is in B minor."), a model
    # trained on more multiple choice answered "Major or minor?" with the key's sentence.
    from musicllm.text_attributes import keys_in, modes_in
    from data_gen.writers.template_qa import QUESTIONS

    by_topic = {"key": set(), "mode": set()}
    for clip in corpus(12):
        mode = clip["labels"]["mode"]
        for seed in range(12):
            for r in TemplateWriter().write([clip], ["qa_factual"], seed=seed):
                question = r["messages"][0]["content"].split("\n")[-1]  # after the audio token
                answer = r["messages"][-1]["content"]
                if question in QUESTIONS["mode"]:
                    assert modes_in(answer) == {mode} and keys_in(answer) == [], answer
                    by_topic["mode"].add(answer)
                elif question in QUESTIONS["key"]:
                    assert keys_in(answer) == [(clip["labels"]["key"], mode)], answer
                    by_topic["key"].add(answer)
    assert by_topic["mode"] and by_topic["key"] and not by_topic["mode"] & by_topic["key"]


def test_estimates_are_hedged_and_labels_are_not():
    clip = {"id": "e1", "audio": "a.wav", "duration": 10.0, "source": "user", "license": "x",
            "labels": {"genre": "rock"},
            "estimates": {"tempo_bpm": 131.4, "key": "A", "mode": "minor", "instruments": ["electric guitar"]}}
    hedges = re.compile(r"\b(around|about|roughly|approximately|probably|likely|seems?|sounds like|estimate\w*)\b", re.I)
    records = [r for seed in range(6) for r in TemplateWriter().write([clip], TASKS, seed=seed)]
    for r in records:
        answer = r["messages"][-1]["content"]
        for sentence in re.split(r"(?<=\.) |\n|; ", answer):
            if re.search(r"BPM|A minor|guitar", sentence):
                assert hedges.search(sentence), (r["task"], sentence)
    attributes = next(r for r in records if r["task"] == "attributes")["messages"][-1]["content"]
    assert "(estimated)" in attributes and "rock (estimated)" not in attributes
    exact = {**clip, "labels": {"tempo_bpm": 131.4}, "estimates": {}}
    caption = next(TemplateWriter().write([exact], ["caption"], seed=0))["messages"][-1]["content"]
    assert "131 BPM" in caption and not hedges.search(caption)


def test_descriptions_state_each_fact_once_in_one_order_whatever_the_wording():
    # A model trained on shuffled facts lost track of what it had said and said it again.
    clips = corpus(40)
    marks = {"instruments": re.compile(r"\b(features|played on|performed on|You can hear|instrumentation)\b"),
             "tempo": re.compile(r"BPM"), "key": re.compile(r"\b[A-G]#? (major|minor)\b"),
             "metre": re.compile(r"\b[2-6]/[48]\b"), "dynamics": re.compile(r"\bdynamics\b"),
             "sections": re.compile(r"\b(laid out|moves through)\b")}
    wordings = set()
    for task in ("caption", "paraphrase"):
        for seed in range(3):
            for text in answers(TemplateWriter().write(clips, [task], seed=seed)):
                where = {fact: [m.start() for m in pattern.finditer(text)] for fact, pattern in marks.items()}
                assert all(len(places) == 1 for places in where.values()), (task, text)
                assert sorted(where, key=where.get) == list(marks), (task, text)
                wordings.add(re.sub(r"[^a-z ]", "", text.lower()).split(" ", 3)[2])
    assert len(wordings) > 10  # the order is fixed, the words are not


def test_nothing_known_is_a_skip_and_metadata_names_are_not_stated():
    empty = {"id": "u1", "audio": "a.wav", "duration": 5.0, "source": "user", "license": "x"}
    records = list(TemplateWriter().write([empty], TASKS, seed=0))
    assert all(isinstance(r, Skip) and r.reason for r in records)
    user = {**empty, "metadata": {"title": "Secret Song", "artist": "Nobody", "tags": ["chill", "lo-fi"],
                                  "description": "my best track"}}
    texts = answers(TemplateWriter().write([user], CAPTION_TASKS, seed=0))
    assert texts and all("chill" in t for t in texts)
    assert not any(w in t for t in texts for w in ("Secret", "Nobody", "best track"))


def test_reasoning_states_its_reasons():
    clip = {"id": "r1", "audio": "a.wav", "duration": 5.0, "source": "procedural", "license": "x",
            "labels": {"tempo_bpm": 124.0, "genre": "electronic dance", "mood": "energetic", "dynamics": "loud"}}
    texts = answers(r for seed in range(5) for r in TemplateWriter().write([clip], ["qa_reasoning"], seed=seed))
    assert len(texts) == 5
    assert all(re.search(r"since|because|typical of", t) for t in texts)
    dance = next(r for seed in range(5) for r in TemplateWriter().write([clip], ["qa_reasoning"], seed=seed)
                 if "danc" in r["messages"][0]["content"] or "party" in r["messages"][0]["content"])
    assert dance["messages"][-1]["content"].startswith("Yes")


def test_instrument_names_read_as_prose():
    assert instrument_name("Electric Bass (finger)") == "fingered electric bass"
    assert instrument_name("String Ensemble 1") == "string ensemble"
    assert instrument_name("drum kit") == "drum kit"


def test_unknown_task_is_a_skip():
    [result] = TemplateWriter().write(corpus(1), ["sing"], seed=0)
    assert isinstance(result, Skip) and "unknown task" in result.reason


# ---- musicllm data write ----

def make_manifest(folder: Path, clips: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        (folder / clip["audio"]).parent.mkdir(parents=True, exist_ok=True)
        (folder / clip["audio"]).write_bytes(b"")
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in clips))
    return path


def test_write_makes_both_stages_with_audio_resolving_from_the_output(tmp_path, capsys):
    clips = corpus(5)
    manifest = make_manifest(tmp_path / "corpus", clips)
    out = tmp_path / "text" / "v1"
    assert write_main([str(manifest), "--out", str(out), "--per-clip", "2"]) == 0
    captions, instructions = list(read_jsonl(out / "captions.jsonl")), list(read_jsonl(out / "instructions.jsonl"))
    assert {r["task"] for r in captions} == set(CAPTION_TASKS)
    assert {r["task"] for r in instructions} == set(INSTRUCTION_TASKS)
    ids = [r["id"] for r in captions + instructions]
    assert len(ids) == len(set(ids)) == len(clips) * len(TASKS) * 2
    assert {r["id"].rsplit(":", 1)[1] for r in captions} == {"0", "1"}
    for r in captions + instructions:
        assert not Path(r["audio"][0]).is_absolute()
        assert (out / r["audio"][0]).resolve() == (tmp_path / "corpus" / "audio" / f"{r['clip_id']}.wav").resolve()
    assert "wrote" in capsys.readouterr().out


def test_write_resumes_after_an_interruption(tmp_path):
    manifest = make_manifest(tmp_path, corpus(4))
    full, cut = tmp_path / "full", tmp_path / "cut"
    write_main([str(manifest), "--out", str(full)])
    write_main([str(manifest), "--out", str(cut)])
    lines = (cut / "captions.jsonl").read_text().splitlines(keepends=True)
    (cut / "captions.jsonl").write_text("".join(lines[:5]) + lines[5][:20])  # killed mid-line
    (cut / "instructions.jsonl").unlink()
    write_main([str(manifest), "--out", str(cut)])
    for name in ("captions.jsonl", "instructions.jsonl"):
        again = sorted(read_jsonl(cut / name), key=lambda r: r["id"])
        assert again == sorted(read_jsonl(full / name), key=lambda r: r["id"])
    write_main([str(manifest), "--out", str(cut)])  # nothing left to do
    assert len(list(read_jsonl(cut / "captions.jsonl"))) == 4 * len(CAPTION_TASKS)


def test_skips_are_logged_and_retried(tmp_path):
    clips = corpus(2) + [{"id": "bare", "audio": "audio/bare.wav", "duration": 3.0, "source": "user",
                          "license": "x", "metadata": {"tags": ["chill"]}}]
    broken = {"id": "broken", "audio": "audio/x.wav", "duration": -1, "source": "user", "license": "x"}
    manifest = make_manifest(tmp_path, clips)
    with open(manifest, "a") as f:
        f.write(json.dumps(broken) + "\n")
    write_main([str(manifest)])
    skipped = list(read_jsonl(tmp_path / "skipped.jsonl"))
    assert {s["id"] for s in skipped} >= {"bare:qa_factual:0", "broken"}
    assert all(s["reason"] for s in skipped)
    written = {r["id"] for name in ("captions.jsonl", "instructions.jsonl") for r in read_jsonl(tmp_path / name)}
    assert not written & {s["id"] for s in skipped}
    # Give the bare clip a tempo: the rerun writes what was skipped, and only that.
    clips[2]["labels"] = {"tempo_bpm": 80.0}
    make_manifest(tmp_path, clips)
    write_main([str(manifest), "--tasks", "qa_factual"])
    assert "bare:qa_factual:0" in {r["id"] for r in read_jsonl(tmp_path / "instructions.jsonl")}
    assert "bare:qa_factual:0" not in {s["id"] for s in read_jsonl(tmp_path / "skipped.jsonl")}


def test_llm_writer_is_chosen_lazily(tmp_path, monkeypatch):
    made = {}

    class FakeLLMWriter(TemplateWriter):
        name, model, prompt_version = "llm", "fake-model", "llm-v0"

        def __init__(self, base_url, model, api_key=None, concurrency=8, cache_dir=None):
            super().__init__()
            made.update(base_url=base_url, model=model, api_key=api_key, concurrency=concurrency, cache_dir=cache_dir)

    monkeypatch.setitem(sys.modules, "data_gen.writers.llm", types.SimpleNamespace(LLMWriter=FakeLLMWriter))
    manifest = make_manifest(tmp_path, corpus(2))
    with pytest.raises(SystemExit):
        write_main([str(manifest), "--writer", "llm"])
    from musicllm.cli import main as cli_main

    assert cli_main(["data", "write", str(manifest), "--writer", "llm", "--base-url", "http://127.0.0.1:9/v1",
                     "--model", "m", "--api-key", "k", "--concurrency", "3", "--tasks", "summary"]) == 0
    assert made == {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key": "k", "concurrency": 3,
                    "cache_dir": str(tmp_path / "llm_cache")}
    assert len(list(read_jsonl(tmp_path / "captions.jsonl"))) == 2


def test_write_help_explains(capsys):
    with pytest.raises(SystemExit) as exit_info:
        write_main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out.lower()
    for flag in ("--out", "--writer", "--tasks", "--per-clip", "--seed", "--base-url", "--concurrency", "resum"):
        assert flag in text


def test_relocate_audio(tmp_path):
    assert relocate_audio("/abs/a.wav", tmp_path, tmp_path / "x") == "/abs/a.wav"
    assert relocate_audio("audio/a.wav", tmp_path / "corpus", tmp_path / "out") == str(Path("../corpus/audio/a.wav"))
    assert relocate_audio("audio/a.wav", tmp_path, tmp_path) == str(Path("audio/a.wav"))


def test_an_instrument_under_another_name_is_never_called_absent():
    clip = {"id": "d", "audio": "a.wav", "duration": 5.0, "source": "procedural", "license": "x",
            "labels": {"instruments": ["drums", "alto sax", "strings", "piano"]}}
    answers_ = answers(r for seed in range(40) for r in TemplateWriter().write([{**clip, "id": f"d{seed}"}],
                                                                               ["qa_factual"], seed=seed))
    no = [a for a in answers_ if a.startswith("No")]
    assert no and not any(re.search(r"no (drum|sax|violin|cello|piano)", a) for a in no), no
    assert any(a.startswith("Yes, drums are playing") or a.startswith("Yes, strings are playing") for a in answers_)

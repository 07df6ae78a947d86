"""Dialogues: several kinds of question about one clip, from the writers' single turns."""

import json

from data_gen.dialogues import TIMELESS, UNKNOWABLE, main, write_dialogues
from data_gen.formats import JsonlWriter, read_jsonl


def single(clip: str, task: str, question: str, answer: str, n: int = 0) -> dict:
    return {"id": f"{clip}:{task}:{n}", "audio": [f"../corpus/{clip}.flac"], "clip_id": clip, "split": "train",
            "task": task, "messages": [{"role": "user", "content": f"<|audio|>\n{question}"},
                                       {"role": "assistant", "content": answer}],
            "provenance": {"writer": "template", "model": "rules", "prompt_version": "t", "seed": 0}}


def write_files(folder):
    data = folder / "data"
    data.mkdir()
    records = []
    for clip, key, bpm in (("a", "C major", 72), ("b", "A minor", 160)):
        records += [single(clip, "caption", "Describe this.", f"A piece in {key} at {bpm} BPM."),
                    single(clip, "summary", "Summarise it.", f"{key}, {bpm} BPM."),
                    single(clip, "qa_factual", "What key is this in?", f"It is in {key}.", 0),
                    single(clip, "qa_factual", "What is the tempo?", f"{bpm} BPM.", 1),
                    single(clip, "qa_factual", "What mood is it?", "Calm.", 2),
                    single(clip, "qa_reasoning", "Could I dance to this?", "Not really."),
                    single(clip, "mc", "Question: key?\n Options: (A) x (B) y", "(A) x")]
    with JsonlWriter(data / "single.jsonl") as writer:
        writer.write_all(records)
    return data / "single.jsonl"


def test_a_dialogue_asks_one_clip_several_kinds_of_question(tmp_path):
    source = write_files(tmp_path)
    out = tmp_path / "data" / "dialogues.jsonl"
    assert write_dialogues([source], out, per_clip=6, turns=4, seed=0) == 12
    rows = list(read_jsonl(out))
    for row in rows:
        clip = row["clip_id"]
        assert row["audio"] == [f"../corpus/{clip}.flac"] and row["task"] == "dialogue"  # relative to the file
        users = [m["content"] for m in row["messages"] if m["role"] == "user"]
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * len(users)
        assert users[0].startswith("<|audio|>\n") and not any("<|audio|>" in u for u in users[1:])  # audio once
        assert 4 <= len(users) <= 5 and len(set(users)) == len(users)  # no question twice
        assert len(set(answers)) == len(answers)  # each kind answered in its own way
        assert sum(u in ("Describe this.", "Summarise it.") for u in users) <= 1  # one caption-like turn at most
        foreign = {"a": ("A minor", "160"), "b": ("C major", "72")}[clip]  # the other clip's facts
        assert not any(fact in answer for fact in foreign for answer in answers)
    honest = [m["content"] for r in rows for m in r["messages"] if m["role"] == "assistant"
              and any(m["content"] in answers for _, answers in UNKNOWABLE.values())]
    assert honest, "some dialogues ask what the audio cannot tell, answered honestly"
    again = tmp_path / "again.jsonl"
    write_dialogues([source], again, per_clip=6, turns=4, seed=0)
    assert [json.loads(line)["messages"] for line in again.read_text().splitlines()] == [r["messages"] for r in rows]


def test_a_model_that_hears_no_time_is_taught_to_say_it_cannot_tell_where_the_chorus_starts(tmp_path):
    """`timeless` (the default's recipe): "When does the chorus start?" is among the questions the
    audio cannot answer, answered with a refusal that names what can be told; without it, never asked."""
    source = write_files(tmp_path)
    asked = {}
    for timeless in (False, True):
        out = tmp_path / f"dialogues-{timeless}.jsonl"
        assert main([str(source), "--out", str(out), "--per-clip", "20", *(["--timeless"] if timeless else [])]) == 0
        turns = [(q["content"], a["content"]) for r in read_jsonl(out)
                 for q, a in zip(r["messages"][::2], r["messages"][1::2])]
        asked[timeless] = [(q, a) for q, a in turns if q.replace("<|audio|>\n", "") in TIMELESS["sections"][0]]
    assert asked[False] == []
    assert len(asked[True]) >= 3 and all(a in TIMELESS["sections"][1] and "can't" in a for _, a in asked[True])


def test_the_same_dialogues_wherever_the_data_live(tmp_path):
    """A build under another home writes the same dialogues (they are seeded by clip, not by path)."""
    outs = []
    for home in ("one", "other/place"):
        folder = tmp_path / home
        folder.mkdir(parents=True)
        outs.append(folder / "data" / "dialogues.jsonl")
        write_dialogues([write_files(folder)], outs[-1], per_clip=6, turns=4, seed=0)
    assert outs[0].read_text() == outs[1].read_text()


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "d.jsonl")]) == 2
    error = capsys.readouterr().err
    assert "no such conversations file" in error and "nope.jsonl" in error

"""The LLM's wordings of the factual questions: which it keeps, how the template writer uses them,
and a wordings file that is not one."""

from __future__ import annotations

import json

import pytest

from data_gen.formats import read_jsonl
from data_gen.wordings import acceptable, load_wordings
from data_gen.write import main as write_main
from data_gen.writers.template import TemplateWriter
from data_gen.writers.template_qa import QUESTIONS

from test_template_writer import corpus


@pytest.mark.parametrize("topic, text", [
    ("tempo", "Is the tempo quick or slow?"), ("tempo", "How fast is this piece?"),
    ("key", "What's the tonic?"), ("mode", "Does this sound in major or minor?"),
    ("key", "Which key is it in, major or minor?"), ("metre", "What is the time signature of this song?"),
    ("instruments", "What kind of instruments are there?"), ("genre", "What type of music is this?"),
    ("mood", "How does this song make you feel?"),
])
def test_short_questions_about_their_topic_are_kept(topic, text):
    assert acceptable(topic, text)


@pytest.mark.parametrize("topic, text", [
    ("tempo", "The tempo of this piece is 120 beats per minute."),  # an answer, not a question
    ("tempo", "What's the genre?"),  # another topic
    ("tempo", "Does this fast piece feel happy?"),  # two topics
    ("instruments", 'The question is "Which instruments can you hear?"'),
    ("genre", "This genre is what?"), ("genre", "So, what's the style?"),
    ("mood", "What?"),  # too short
    ("mood", "How does it make you feel? And the tempo?"),
    ("key", " ".join(["Which"] + ["very"] * 16 + ["key?"])),  # too long
])
def test_answers_other_topics_and_odd_lines_are_dropped(topic, text):
    assert not acceptable(topic, text)


def test_the_writer_asks_in_the_llm_wordings_too_and_answers_the_same_facts():
    clips = corpus(60)
    extra = {"tempo": ["How quick is it, would you say?"], "mood": ["What vibe is this, emotionally?"]}
    labels = {c["id"]: c["labels"] for c in clips}
    records = [r for seed in range(8) for r in TemplateWriter(wordings=extra).write(clips, ["qa_factual"], seed=seed)]
    asked = {}  # each seed asks each clip about another topic
    for r in records:
        asked.setdefault(r["messages"][0]["content"].split("\n", 1)[1], []).append(r)
    assert set(extra["tempo"] + extra["mood"]) <= set(asked)
    for r in asked[extra["tempo"][0]]:  # answered with the clip's own tempo, as a template question is
        assert f"{round(labels[r['clip_id']]['tempo_bpm'])} BPM" in r["messages"][1]["content"]
    for r in asked[extra["mood"][0]]:
        assert labels[r["clip_id"]]["mood"] in r["messages"][1]["content"]
    # the templates' own wordings are still asked
    assert any(q in asked for q in QUESTIONS["tempo"])


def test_data_write_takes_a_wordings_file_and_names_a_broken_one(tmp_path, capsys):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(c) + "\n" for c in corpus(40)))
    good = tmp_path / "wordings.json"
    good.write_text(json.dumps({"wordings": {"key": ["What's the tonic?"]}}))
    assert write_main([str(manifest), "--tasks", "qa_factual", "--per-clip", "4", "--wordings", str(good)]) == 0
    questions = [r["messages"][0]["content"] for r in read_jsonl(tmp_path / "instructions.jsonl")]
    assert any(q.endswith("What's the tonic?") for q in questions)

    for content, problem in (("{not json", "not a wordings file"), (json.dumps({"wordings": {"colour": ["Red?"]}}),
                             "unknown topic 'colour'"), (json.dumps({"wordings": {"key": [""]}}), "non-empty strings")):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        assert write_main([str(manifest), "--out", str(tmp_path / "out"), "--wordings", str(bad)]) == 2
        error = capsys.readouterr().err
        assert "bad.json" in error and problem in error
    with pytest.raises(ValueError, match="missing.json"):
        load_wordings(tmp_path / "missing.json")

"""Multiple-choice questions as training conversations: with the audio, and as text-only reading."""

import csv
import json
import re

import pytest

from training.multiple_choice import conversations, main, supporting

COLUMNS = ["question", "correct_answer", "distractor_1_answer", "distractor_2_answer", "distractor_3_answer",
           "dataset", "dataset_identifier", "genre", "music_knowledge", "music_reasoning", "audio"]
CAPTIONS = {"clip0": ["A calm piece in D minor.", "Slow and calm, in D minor."], "clip1": ["A fast rock tune in E major."]}


def questions(tmp_path, clips=("clip0", "clip1")):
    path = tmp_path / "mc.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for i, clip in enumerate(clips):
            (tmp_path / f"{clip}.flac").write_bytes(b"")
            writer.writerow({"question": f"Which key {i}?", "correct_answer": f"right {i}",
                             "distractor_1_answer": f"near {i}", "distractor_2_answer": f"other {i}",
                             "distractor_3_answer": f"far {i}", "dataset": "ours", "dataset_identifier": clip,
                             "genre": "rock", "music_knowledge": "['harmony']", "music_reasoning": "",
                             "audio": f"{clip}.flac"})
    return path


def captions_file(tmp_path, captions=CAPTIONS):
    path = tmp_path / "captions.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for clip, texts in captions.items():
            for j, text in enumerate(texts):
                f.write(json.dumps({"id": f"{clip}:caption:{j}", "clip_id": clip, "task": "caption", "audio": [],
                                    "messages": [{"role": "user", "content": "<|audio|>\nDescribe it."},
                                                 {"role": "assistant", "content": text}]}) + "\n")
    return path


def answered(record, turn: int = 0) -> tuple[str, str]:
    """(the option text the reply's letter points to in the prompt, the reply's own text)."""
    user, reply = record["messages"][2 * turn: 2 * turn + 2]
    text, letter = re.fullmatch(r"(.*) \(([ABCD])\)", reply["content"]).groups()
    shown = dict(re.findall(r"\(([ABCD])\) (.*?) (?=\([ABCD]\)|\n)", user["content"]))
    return shown[letter], text


def test_audio_conversations_answer_with_the_right_option_in_every_order(tmp_path):
    records = conversations(questions(tmp_path), "train", orders=3)
    assert len(records) == 6 and len({r["id"] for r in records}) == 6
    for r in records:
        assert r["messages"][0]["content"].startswith("<|audio|>\nQuestion: ") and len(r["audio"]) == 1
        pointed, text = answered(r)
        assert pointed == text and text.startswith("right ")
    first = [r for r in records if r["id"].startswith(records[0]["id"].split(":")[0])]
    assert len({r["messages"][1]["content"][-3:] for r in first}) > 1  # the letter moves with the order


def test_a_share_of_questions_is_answered_with_the_option_text_alone(tmp_path):
    records = conversations(questions(tmp_path), "train", orders=8, text_share=0.5)
    replies = [r["messages"][1]["content"] for r in records]
    bare = [reply for reply in replies if not re.search(r" \([ABCD]\)$", reply)]
    assert 0 < len(bare) < len(replies) and all(reply.startswith("right ") for reply in bare)
    assert conversations(questions(tmp_path), "train", orders=8, text_share=0.5) == records  # seeded


def test_reading_conversations_put_a_caption_of_the_same_clip_where_the_audio_was(tmp_path):
    records = conversations(questions(tmp_path), "train", orders=2, captions=captions_file(tmp_path))
    assert len(records) == 4
    for r in records:
        assert r["audio"] == [] and "<|audio|>" not in r["messages"][0]["content"] and r["task"] == "mc_read"
        context, prompt = r["messages"][0]["content"].split("\nQuestion: ")
        clip = "clip0" if "Which key 0?" in prompt else "clip1"
        assert context in CAPTIONS[clip]
        pointed, text = answered(r)
        assert pointed == text and text.startswith("right ")
    again = conversations(questions(tmp_path), "train", orders=2, captions=captions_file(tmp_path))
    assert again == records  # seeded


def test_reading_asks_all_of_a_clips_questions_after_one_caption(tmp_path):
    path = tmp_path / "mc.csv"
    (tmp_path / "clip0.flac").write_bytes(b"")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for question, answer, wrong in (("Which key?", "D minor", "E major"), ("Which mood?", "calm", "angry"),
                                        ("Which tempo?", "slow", "fast")):
            writer.writerow({"question": question, "correct_answer": answer, "distractor_1_answer": wrong,
                             "distractor_2_answer": "A minor", "distractor_3_answer": "C major",
                             "dataset": "ours", "dataset_identifier": "clip0", "genre": "rock",
                             "music_knowledge": "", "music_reasoning": "", "audio": "clip0.flac"})
    captions = {"clip0": ["A calm piece.", "Slow and calm, in D minor.", "Fast, angry, in E major."]}
    records = conversations(path, "train", orders=3, captions=captions_file(tmp_path, captions))
    assert len(records) == 3  # one conversation per option order
    firsts = set()
    for r in records:
        users = [m["content"] for m in r["messages"][::2]]
        assert len(users) == 3 and users[0].startswith("Slow and calm, in D minor.\nQuestion: ")
        assert all(u.startswith("Question: ") for u in users[1:])  # the caption is given once
        assert sorted(answered(r, t)[1] for t in range(3)) == ["D minor", "calm", "slow"]
        assert all(answered(r, t)[0] == answered(r, t)[1] for t in range(3))
        firsts.add(users[0].split("Question: ")[1][:10])
    assert len(firsts) > 1  # no question always comes first


def test_reading_context_is_a_caption_that_states_the_answers():
    captions = ["A calm piece with piano.", "It is in D minor, calm.", "It is in E major or D minor?"]
    key = {"options": ["E major", "D minor", "A minor", "C major"], "answer_index": 1}
    mood = {"options": ["angry", "calm", "happy", "sad"], "answer_index": 1}
    assert supporting(captions, [key]) == ["It is in D minor, calm."]
    assert supporting(captions, [mood]) == captions[:2]
    assert supporting(captions, [key, mood]) == ["It is in D minor, calm."]
    assert supporting(["Calm.", "Quiet."], [key]) == ["Calm.", "Quiet."]  # none says: any


def test_reading_without_a_caption_of_the_clip_names_the_question_and_clip(tmp_path):
    with pytest.raises(ValueError, match="no caption of clip 'clip1'"):
        conversations(questions(tmp_path), "train", captions=captions_file(tmp_path, {"clip0": ["Calm."]}))


def test_cli_writes_reading_conversations(tmp_path, capsys):
    out = tmp_path / "read.jsonl"
    assert main([str(questions(tmp_path)), "--out", str(out), "--orders", "1", "--read",
                 str(captions_file(tmp_path))]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(r["task"] == "mc_read" for r in rows)
    assert "wrote 2 conversations" in capsys.readouterr().out


def test_cli_names_a_missing_caption_or_file_and_keeps_the_old_output(tmp_path, capsys):
    out = tmp_path / "read.jsonl"
    out.write_text("kept\n")
    mc = str(questions(tmp_path))
    assert main([mc, "--out", str(out), "--read", str(captions_file(tmp_path, {"clip0": ["Calm."]}))]) == 2
    assert "no caption of clip 'clip1'" in capsys.readouterr().err
    assert main([mc, "--out", str(out), "--read", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such captions file" in capsys.readouterr().err
    assert out.read_text() == "kept\n"

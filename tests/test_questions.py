"""Questions files: columns, audio resolution, option order, the prompt."""

import csv
import json
from collections import Counter

import pytest

from data_gen.questions import ONE_SHOT_EXAMPLE, QuestionError, format_prompt, load_questions, parse_list

COLUMNS = ["question", "correct_answer", "distractor_1_answer", "distractor_2_answer", "distractor_3_answer",
           "dataset", "dataset_identifier", "genre", "music_knowledge", "music_reasoning"]


def write_csv(path, rows, columns=COLUMNS):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def row(i, ident="clip0", **extra):
    return {"question": f"Question {i}?", "correct_answer": f"right {i}", "distractor_1_answer": f"near {i}",
            "distractor_2_answer": f"true {i}", "distractor_3_answer": f"far {i}", "dataset": "sdd",
            "dataset_identifier": ident, "genre": "rock", "music_knowledge": "['Harmony', 'melody']",
            "music_reasoning": "", **extra}


def test_prompt_is_muchomusics():
    expected = "Question: Q?\n Options: (A) a (B) b (C) c (D) d \n The correct answer is: "
    assert format_prompt("Q?", ["a", "b", "c", "d"]) == expected
    shot = format_prompt("Q?", ["a", "b", "c", "d"], examples=[ONE_SHOT_EXAMPLE])
    assert shot.startswith(ONE_SHOT_EXAMPLE + "\n Question: Q?") and ONE_SHOT_EXAMPLE.endswith("(B) Strings")


def test_parse_list():
    assert parse_list("['Harmony', 'melody']") == ["harmony", "melody"]
    assert parse_list("") == parse_list("nan") == parse_list(None) == parse_list(float("nan")) == parse_list("[]") == []
    assert parse_list("mood") == ["mood"]


def test_balanced_positions_and_recorded_order(tmp_path):
    path = write_csv(tmp_path / "q.csv", [row(i) for i in range(40)])
    items = load_questions(path, require_audio=False, seed=3)
    assert Counter(i["answer_index"] for i in items) == {0: 10, 1: 10, 2: 10, 3: 10}
    for item in items:
        assert item["options"][item["answer_index"]].startswith("right")
        assert item["option_sources"][item["answer_index"]] == "correct"
        assert sorted(item["option_sources"]) == ["correct", "distractor_1", "distractor_2", "distractor_3"]
    assert items == load_questions(path, require_audio=False, seed=3)  # deterministic
    assert [i["options"] for i in items] != [i["options"] for i in load_questions(path, require_audio=False, seed=4)]
    assert items[0]["knowledge"] == ["harmony", "melody"] and items[0]["reasoning"] == []
    assert len({i["id"] for i in items}) == 40


def test_hash_order_matches_the_generator(tmp_path):
    multiple_choice = pytest.importorskip("data_gen.multiple_choice")
    rows = [row(i) for i in range(8)]
    items = load_questions(write_csv(tmp_path / "q.csv", rows), require_audio=False, order="hash", seed=2)
    for r, item in zip(rows, items):
        assert item["options"] == multiple_choice.option_order(r, 2)


def test_audio_column_dir_and_map(tmp_path):
    (tmp_path / "audio" / "sub").mkdir(parents=True)
    (tmp_path / "audio" / "a.wav").write_bytes(b"x")
    (tmp_path / "audio" / "sub" / "b.mp3").write_bytes(b"x")
    (tmp_path / "elsewhere.flac").write_bytes(b"x")
    # our files: an `audio` column relative to the CSV
    ours = write_csv(tmp_path / "ours.csv", [row(0, audio="audio/a.wav")], COLUMNS + ["audio"])
    assert load_questions(ours)[0]["audio"] == str((tmp_path / "audio" / "a.wav").resolve())
    # MuChoMusic's: <dataset_identifier>.<ext> anywhere under --audio-dir
    theirs = write_csv(tmp_path / "theirs.csv", [row(0, "a"), row(1, "b")])
    assert [i["audio"].split("/")[-1] for i in load_questions(theirs, audio_dir=tmp_path / "audio")] == ["a.wav", "b.mp3"]
    # a mapping: relative to --audio-dir when given (b is not mapped: found in the folder) ...
    (tmp_path / "map.json").write_text(json.dumps({"a": "../elsewhere.flac"}))
    mapped = load_questions(theirs, audio_dir=tmp_path / "audio", audio_map=tmp_path / "map.json")
    expected = [tmp_path.resolve() / "elsewhere.flac", (tmp_path / "audio/sub/b.mp3").resolve()]
    assert [i["audio"] for i in mapped] == [str(p) for p in expected]
    # ... else to the map's folder
    (tmp_path / "map.csv").write_text("dataset_identifier,path\na,elsewhere.flac\nb,elsewhere.flac\n")
    assert all(i["audio"].endswith("elsewhere.flac") for i in load_questions(theirs, audio_map=tmp_path / "map.csv"))


def test_missing_audio_names_the_row(tmp_path):
    (tmp_path / "audio").mkdir()
    path = write_csv(tmp_path / "q.csv", [row(0, "there"), row(1, "gone")])
    (tmp_path / "audio" / "there.wav").write_bytes(b"x")
    with pytest.raises(QuestionError, match=r"line 3 \(dataset_identifier 'gone'\).*no gone\.<wav"):
        load_questions(path, audio_dir=tmp_path / "audio")
    with pytest.raises(QuestionError, match="neither --audio-dir nor --audio-map"):
        load_questions(path)
    assert load_questions(path, require_audio=False)[1]["audio"] is None  # fine for --audio-mode none


def test_bad_header(tmp_path):
    path = write_csv(tmp_path / "q.csv", [{"question": "q"}], ["question"])
    with pytest.raises(QuestionError, match="missing column"):
        load_questions(path)

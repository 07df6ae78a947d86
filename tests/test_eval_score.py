"""Scoring hand-written predictions with known answers, and the MIR baseline."""

import csv
import json

import pytest

from eval.baseline import choose
from eval.baseline import main as baseline_main
from eval.score import main as score_main
from eval.score import score_rows

KEYS = ["A minor", "C major", "Triple metre (3/4)", "Fast tempo"]
TEMPI = ["Slow tempo (below 66 BPM)", "Calm", "Key of D major", "Fast tempo (126–156 BPM)"]


def pred(answer, output, logprobs, counts=(5, 5, 5, 5), options=KEYS, **extra):
    return {"id": f"q{len(output)}-{answer}-{logprobs[0]}", "audio_mode": "audio", "model": "ckpt", "options": options,
            "answer_index": answer, "output": output, "option_logprobs": logprobs, "option_token_counts": list(counts),
            "knowledge": ["harmony"], "reasoning": [], "genre": "rock", "flags": "", **extra}


ROWS = [
    # right by every scorer
    pred(1, "B", [-9.0, -1.0, -9.0, -9.0], question_type="key"),
    # the quirk: "Answer" holds an A -> MuChoMusic's parser gives up; log-likelihood is wrong
    pred(2, "Answer: C", [-1.0, -9.0, -9.0, -9.0]),
    # an article read as option A by MuChoMusic; the robust parser finds "Calm" (wrong too);
    # log-likelihood right by the sum, wrong by the mean per token
    pred(3, "A calm song", [-9.0, -8.0, -9.0, -6.0], counts=(9, 2, 9, 2), options=TEMPI,
         knowledge=["metre and rhythm"], genre="jazz", question_type="tempo"),
    # no answer; flagged as guessable without audio
    pred(0, "", [-1.0, -9.0, -9.0, -9.0], knowledge=["metre and rhythm"], genre="jazz", flags="text_only_guessable:longest"),
]


def test_known_accuracies():
    run = score_rows(ROWS)
    s = run["scorers"]
    assert s["muchomusic"] == {"accuracy": 0.25, "answered": 0.5, "correct": 1}
    assert s["robust"] == {"accuracy": 0.5, "answered": 0.75, "correct": 2}
    assert s["loglik"]["accuracy"] == 0.75 and s["loglik"]["answered"] == 1.0
    assert s["loglik_mean"]["accuracy"] == 0.5
    assert "cloze" not in s  # rows without option_text_logprobs
    assert run["primary"] == "robust" and run["n"] == 4 and run["name"] == "ckpt/audio"
    b = run["breakdown"]
    assert b["knowledge"]["harmony"]["robust"]["accuracy"] == 1.0
    assert b["knowledge"]["metre and rhythm"]["robust"]["accuracy"] == 0.0
    assert b["genre"]["jazz"]["loglik"]["accuracy"] == 1.0 and b["genre"]["jazz"]["n"] == 2
    assert b["flagged"]["text-only-guessable"]["n"] == 1 and b["flagged"]["not flagged"]["n"] == 3
    assert run["confusion"]["robust"]["key"] == {"C major|C major": 1}
    assert run["confusion"]["robust"]["tempo"] == {"fast|other": 1}  # chose "Calm": no tempo
    assert run["confusion"]["loglik"]["tempo"] == {"fast|fast": 1}


def test_cloze_ranks_the_option_texts_without_their_letters():
    # "(A)" is the likeliest letter, but the answer's own text is the likeliest reply
    rows = [pred(2, "", [-1.0, -5.0, -4.0, -6.0], option_text_logprobs=[-7.0, -6.0, -2.0, -8.0]),
            pred(1, "", [-1.0, -5.0, -4.0, -6.0], option_text_logprobs=[-7.0, -6.0, -2.0, -8.0])]
    s = score_rows(rows)["scorers"]
    assert s["loglik"]["accuracy"] == 0.0 and s["cloze"] == {"accuracy": 0.5, "answered": 1.0, "correct": 1}


def test_score_command(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert score_main([str(preds), "--out", str(tmp_path / "s.json")]) == 0
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["kind"] == "multiple_choice" and data["runs"][0]["scorers"]["robust"]["accuracy"] == 0.5
    assert "ckpt/audio" in capsys.readouterr().out


@pytest.mark.parametrize("question,options,estimates,expected", [
    ("Which key is this piece in?", ["Triple metre (3/4)", "A minor", "C major", "Fast tempo"], {"key": "C", "mode": "major"}, 2),
    ("What best describes the speed of this track?", TEMPI, {"tempo_bpm": 140.2}, 3),
    ("What best describes the speed of this track?", TEMPI, {"tempo_bpm": 100.0}, -1),  # no option says medium-fast
    ("What is the time signature of this piece?", ["Quadruple metre (4/4)", "Triple metre (3/4)", "Minor", "Jazz"],
     {"time_signature": "3/4"}, 1),
    ("Which tonality does the harmony lean towards?", ["Major", "Minor", "Fast tempo", "Piano part"], {"mode": "minor"}, 1),
    ("Which instrument is played?", ["Piano", "Drums", "Flute", "Harp"], {"key": "C", "mode": "major"}, -1),
    ("Which key is this piece in?", ["A minor", "C major", "D major", "Jazz"], {}, -1),
])
def test_baseline_choices(question, options, estimates, expected):
    assert choose(question, options, estimates)[0] == expected


def test_baseline_command_is_scored_by_its_choice(tmp_path):
    rows = [{"question": "Which key is this piece in?", "correct_answer": "C major", "distractor_1_answer": "A minor",
             "distractor_2_answer": "Triple metre (3/4)", "distractor_3_answer": "Fast tempo", "dataset": "t",
             "dataset_identifier": f"c{i}", "genre": "rock", "music_knowledge": "['harmony']", "music_reasoning": "[]"}
            for i in range(3)]
    with open(tmp_path / "q.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    manifest = [{"id": "c0", "estimates": {"key": "C", "mode": "major"}},
                {"id": "c1", "estimates": {"key": "A", "mode": "minor"}}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(c) + "\n" for c in manifest))
    out = tmp_path / "b.jsonl"
    args = ["--questions", str(tmp_path / "q.csv"), "--manifest", str(tmp_path / "m.jsonl"), "--out", str(out)]
    assert baseline_main(args) == 0
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["choice"] >= 0 for p in preds] == [True, True, False]  # c2 has no estimates: abstains
    run = score_rows(preds)
    assert set(run["scorers"]) == {"choice"} and run["primary"] == "choice"
    assert run["scorers"]["choice"] == {"accuracy": pytest.approx(1 / 3), "answered": pytest.approx(2 / 3), "correct": 1}

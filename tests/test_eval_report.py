"""The report: REPORT.md with its tables, and PNGs that are real images."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402

from eval.captioning import score_captions  # noqa: E402
from eval.report import main  # noqa: E402
from eval.score import score_rows  # noqa: E402


def rows(mode, right, n=40, model="ckpt"):
    """n key questions on two dimensions; the first `right` answered correctly."""
    out = []
    for i in range(n):
        answer = i % 4
        options = ["A minor", "C major", "G major", "E minor"]
        out.append({"id": f"q{i}", "audio_mode": mode, "model": model, "options": options, "answer_index": answer,
                    "output": "ABCD"[answer] if i < right else "ABCD"[(answer + 1) % 4],
                    "option_logprobs": [-1.0, -2.0, -3.0, -4.0], "option_token_counts": [3, 3, 3, 3],
                    "knowledge": ["harmony"] if i % 2 else ["melody"], "reasoning": ["mood"] if i % 3 == 0 else [],
                    "genre": "rock" if i % 2 else "jazz", "flags": "", "question_type": "key"})
    return out


def test_report_writes_markdown_and_pngs(tmp_path):
    runs = [score_rows(rows("audio", 32)), score_rows(rows("none", 11)), score_rows(rows("noise", 10))]
    baseline = [dict(r, model="mir-baseline", choice=r["answer_index"] if i < 20 else -1)
                for i, r in enumerate(rows("audio", 0))]
    for r in baseline:
        del r["output"], r["option_logprobs"]
    runs.append(score_rows(baseline))
    (tmp_path / "scores.json").write_text(json.dumps({"kind": "multiple_choice", "runs": runs}))
    captions = score_captions([{"id": "c", "caption": "A rock song at 120 BPM.", "references": ["A rock song."],
                                "labels": {"genre": "rock", "tempo_bpm": 121}}])
    (tmp_path / "caps.json").write_text(json.dumps({"kind": "captioning", "runs": [captions]}))
    out = tmp_path / "report"
    assert main([str(tmp_path / "scores.json"), str(tmp_path / "caps.json"), "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    for text in ["## Multiple choice: accuracy (%)", "| ckpt/audio | audio | 40 |", "80.0", "| ±15.5 |",
                 "## Does the model listen?",
                 "+52.5 points: listens", "## Per music-knowledge dimension", "| melody |", "## Per genre",
                 "mir-baseline/audio", "50.0", "## Captioning", "METEOR (exact match only)", "| genre | 1 | 100.0 |",
                 # breakdowns: the primary scorer (robust parser), then log-likelihood beside it
                 "ckpt/audio (log-lik (sum))", "| key | 80.0 (n=40) | 25.0 (n=40) |"]:
        assert text in report, text
    # "(B) option text" likelihoods say nothing of listening in a model that answers with the text alone
    assert "| ckpt | robust parser |" in report and "| ckpt | log-lik (sum) |" not in report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "accuracy_by_dimension.png" in pngs and "confusion_ckpt-audio_key.png" in pngs
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(out / name).shape[0] > 100
        assert f"]({name})" in report


def test_same_without_audio_is_called_out(tmp_path):
    runs = [score_rows(rows("audio", 20)), score_rows(rows("none", 19))]
    (tmp_path / "s.json").write_text(json.dumps({"kind": "multiple_choice", "runs": runs}))
    assert main([str(tmp_path / "s.json"), "--out", str(tmp_path / "r")]) == 0
    assert "no evidence that it listens" in (tmp_path / "r" / "REPORT.md").read_text()


def test_rejects_other_json(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    assert main([str(tmp_path / "x.json"), "--out", str(tmp_path / "r")]) == 2
    assert "not a score file" in capsys.readouterr().err


def test_free_text_answers_get_their_own_section(tmp_path):
    """eval follow's scores: a table per file of whether the answers respond to the question asked."""
    from eval.follow import score_rows as score_answers

    labels = {"key": "C", "mode": "major", "tempo_bpm": 72, "instruments": ["piano"]}
    answers = [("key", "It is in C major."), ("tempo", "It is in C major."), ("instruments", "A solo piano."),
               ("caption", "A calm solo piano piece in A minor at 72 BPM.")]
    follow = score_answers([{"id": f"c:{kind}", "clip": "c", "kind": kind, "question": "?", "wording": 0,
                             "answer": answer, "audio": "c.wav", "labels": labels} for kind, answer in answers])
    (tmp_path / "follow.json").write_text(json.dumps({**follow, "file": "follow.jsonl"}))
    assert main([str(tmp_path / "follow.json"), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "does the answer respond to the question asked?" in report
    assert "| key | 1 | 100.0 | 100.0 |" in report and "| tempo | 1 | 0.0 |" in report  # the key sentence, asked the tempo
    assert "two kinds got the same answer on 1 of them" in report
    assert "Its caption and its answer to the key, mode, tempo or metre question disagreed on 1 of 1." in report  # A vs C
    assert "Answers that said the music holds no music (silence or noise): 0." in report


def test_answers_about_silence_and_noise_get_their_line(tmp_path):
    """The quickstart's report says how often a silent or noisy clip was answered as what it is."""
    from eval.follow import score_rows as score_answers

    rows = [{"id": "s:key", "clip": "s", "kind": "key", "question": "?", "wording": 0, "audio": "s.wav",
             "labels": {"sound": "silence"}, "answer": "There is no key to name: the clip is silent."},
            {"id": "s:tempo", "clip": "s", "kind": "tempo", "question": "?", "wording": 0, "audio": "s.wav",
             "labels": {"sound": "silence"}, "answer": "It is fast, at 120 BPM."}]
    (tmp_path / "follow.json").write_text(json.dumps({**score_answers(rows), "file": "follow.jsonl"}))
    assert main([str(tmp_path / "follow.json"), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "clips of silence and noise (1, 2 answers, every kind but theory): the answer says the clip is not " \
           "music in 50.0%, and names what it is (silence, noise) in 50.0%." in report

"""eval.benchmarks.heads_vs_answers: who chose the right option, the heads or the LLM."""

from __future__ import annotations

import math

from eval.benchmarks.heads_vs_answers import compare, main, option_scores, question_kind

LOG = math.log
HEADS = {  # one clip: the heads hear B minor, 6/8, fast, jazz, calm, piano + drums
    "tonic": {"B": LOG(0.7), "D": LOG(0.2), "A#": LOG(0.1)}, "mode": {"minor": LOG(0.8), "major": LOG(0.2)},
    "tempo": {"fast": LOG(0.6), "moderate": LOG(0.4)}, "metre": {"6/8": LOG(0.5), "3/4": LOG(0.3), "4/4": LOG(0.2)},
    "style": {"jazz": LOG(0.9), "hip-hop": LOG(0.1)}, "mood": {"calm": LOG(0.7), "sad": LOG(0.3)},
    "instruments": {"piano": LOG(0.9), "drums": LOG(0.8), "flute": LOG(0.1)},
}


def row(question, options, answer, llm_choice):
    logprobs = [-5.0] * len(options)
    logprobs[llm_choice] = -1.0
    return {"question": question, "options": options, "answer_index": answer, "option_text_logprobs": logprobs,
            "audio_shown": "clip.flac"}


def test_each_kind_is_read_from_the_options_and_the_heads_rank_them():
    key = ["D minor", "B minor", "A# minor", "D major"]
    assert question_kind("Which key is this piece in?", key, 1, HEADS) == "key"
    scores = option_scores("key", key, HEADS)
    assert max(range(4), key=scores.__getitem__) == 1  # B (0.7) x minor (0.8)
    metre = ["Triple metre (3/4)", "Compound duple metre (6/8)", "Key of B minor", "Quadruple metre (4/4)"]
    assert question_kind("How are the beats grouped in each bar?", metre, 1, HEADS) == "metre"
    assert option_scores("metre", metre, HEADS)[2] == float("-inf")  # a padded option no head names
    assert question_kind("What genre does this track belong to?", ["Hip hop", "Jazz"], 1, HEADS) == "genre"
    assert option_scores("genre", ["Hip hop", "Jazz"], HEADS) == [LOG(0.1), LOG(0.9)]
    assert question_kind("Which of these instruments can be heard?", ["Flute", "Piano"], 1, HEADS) == "instruments"
    assert question_kind("What is the overall volume level?", ["Mostly soft", "Moderate"], 0, HEADS) is None


def test_the_llm_not_following_a_right_head_is_counted_apart():
    rows = [row("Which key is this piece in?", ["D minor", "B minor", "A# minor", "D major"], 1, llm_choice=0),
            row("What mood does this music convey?", ["Sad", "Calm"], 1, llm_choice=1),
            row("What genre does this track belong to?", ["Jazz", "Hip hop"], 1, llm_choice=1)]
    results = compare(rows, lambda path: HEADS)
    assert results["key"] == {"questions": 1, "llm_right": 0, "heads_right": 1, "both": 0, "heads_only": 1, "llm_only": 0}
    assert results["mood"]["both"] == 1 and results["genre"]["llm_only"] == 1
    assert list(results)[-1] == "all" and results["all"]["questions"] == 3 and results["all"]["heads_only"] == 1


def test_predictions_without_audio_scores_are_refused_by_name(tmp_path, capsys):
    predictions = tmp_path / "none.jsonl"
    predictions.write_text('{"question": "Which key?", "options": ["C major"], "answer_index": 0, "audio_shown": null}\n')
    assert main(["--checkpoint", str(tmp_path / "model"), "--predictions", str(predictions),
                 "--out", str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert str(predictions) in err and "--audio-mode audio" in err and not (tmp_path / "out.json").exists()

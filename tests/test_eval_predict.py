"""The prediction phase: the inputs it builds under each audio mode, option log-likelihoods,
and the command end to end (rows, option orders, resuming)."""

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import small_text_overrides
from eval.predict import (ClipSource, derangement, generation_inputs, main, noise_like, option_reply, predict_batch,
                          reply_ids, user_turn)
from data_gen.questions import format_prompt, load_questions

FREQS = [220.0, 330.0, 440.0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_tokenizer):
    """A saved tiny random checkpoint, three clips of different lengths, two questions per clip."""
    from musicllm.checkpoint import save_checkpoint
    from musicllm.modeling import MusicLLMForConditionalGeneration
    from musicllm.processing import MusicLLMProcessor
    from musicllm.tiny import tiny_config

    root = tmp_path_factory.mktemp("eval_predict")
    torch.manual_seed(0)
    config = tiny_config(tiny_tokenizer, text_overrides=small_text_overrides(), stack_factor=10)
    model = MusicLLMForConditionalGeneration(config).eval()
    processor = MusicLLMProcessor(tiny_tokenizer, config)
    save_checkpoint(model, processor, root / "ckpt", export=False)
    (root / "audio").mkdir()
    rows = []
    for k, freq in enumerate(FREQS):
        t = np.arange(int((1.0 + 0.5 * k) * 16000)) / 16000
        sf.write(root / "audio" / f"clip{k}.wav", (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
        for q, (question, right, near) in enumerate([("Which key is this piece in?", "C major", "A minor"),
                                                     ("How would you describe the pace?", "Fast tempo", "Slow tempo")]):
            rows.append({"question": question, "correct_answer": right, "distractor_1_answer": near,
                         "distractor_2_answer": f"Calm mood {k}", "distractor_3_answer": "Piano part",
                         "dataset": "test", "dataset_identifier": f"clip{k}", "genre": "rock",
                         "music_knowledge": "['harmony']", "music_reasoning": "[]", "audio": f"audio/clip{k}.wav",
                         "flags": ""})
    with open(root / "q.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root, model, processor, load_questions(root / "q.csv")


def prompts_of(items):
    return [format_prompt(i["question"], i["options"]) for i in items]


def test_none_removes_the_audio(setup):
    _, _, processor, items = setup
    source = ClipSource(items, "none", processor.load_audio)
    clips = [source.clip(i) for i in items]
    assert clips == [None] * len(items) and source.shown_path(items[0]) is None
    batch = generation_inputs(processor, prompts_of(items), clips)
    assert int((batch["input_ids"] == processor.audio_token_id).sum()) == 0
    assert batch["audio_values"].shape[0] == 0 and batch["audio_lens"].numel() == 0
    assert processor.audio_token_id not in reply_ids(processor, prompts_of(items)[0], None, option_reply(0, items[0]["options"][0]))
    clip = ClipSource(items, "audio", processor.load_audio).clip(items[0])
    with_audio = generation_inputs(processor, prompts_of(items[:1]), [clip])
    assert int((with_audio["input_ids"] == processor.audio_token_id).sum()) > 0


def test_noise_replaces_the_audio_keeping_length_and_loudness(setup):
    _, _, processor, items = setup
    real, noise = ClipSource(items, "audio", processor.load_audio), ClipSource(items, "noise", processor.load_audio)
    for item in items:
        clip, fake = real.clip(item), noise.clip(item)
        assert fake.shape == clip.shape and fake.dtype == np.float32
        assert not np.allclose(fake, clip) and abs(np.corrcoef(fake, clip)[0, 1]) < 0.1
        assert np.sqrt(np.mean(fake**2)) == pytest.approx(np.sqrt(np.mean(clip**2)), rel=1e-3)
        assert np.array_equal(fake, noise.clip(item))  # seeded
    batch = generation_inputs(processor, prompts_of(items[:1]), [noise.clip(items[0])])
    assert int((batch["input_ids"] == processor.audio_token_id).sum()) == processor.num_audio_tokens(real.clip(items[0]))
    white = noise_like(np.ones(1000, np.float32), seed=1, colour="white")
    assert np.sqrt(np.mean(white**2)) == pytest.approx(1.0, rel=1e-3)


def test_other_gives_every_question_another_clip(setup):
    _, _, processor, items = setup
    source = ClipSource(items, "other", processor.load_audio, seed=5)
    shown = [source.shown_path(i) for i in items]
    assert all(s != i["audio"] and s is not None for s, i in zip(shown, items))
    assert sorted(set(shown)) == sorted({i["audio"] for i in items})  # a permutation of the clips
    for item, path in zip(items, shown):
        assert np.array_equal(source.clip(item), processor.load_audio(path))
    assert derangement(["a", "b"], 0) == {"a": "b", "b": "a"}
    with pytest.raises(ValueError, match="at least 2 distinct clips"):
        ClipSource(items[:2], "other", processor.load_audio)  # both questions are on clip0


def test_option_logprobs_match_unpadded_rows(setup):
    _, model, processor, items = setup
    source = ClipSource(items, "audio", processor.load_audio)
    chosen = [items[0], items[2], items[4]]  # three clip lengths: the batch is padded
    clips = [source.clip(i) for i in chosen]
    expected, counts = {"letter": [], "text": []}, {"letter": [], "text": []}
    with torch.no_grad():
        for prompt, clip, item in zip(prompts_of(chosen), clips, chosen):
            for form, replies in (("letter", [option_reply(k, o) for k, o in enumerate(item["options"])]),
                                  ("text", item["options"])):
                for reply in replies:
                    turn = user_turn(prompt, True) + [{"role": "assistant", "content": reply}]
                    batch = processor([turn], [[clip]], add_generation_prompt=False, with_labels=True)
                    labels = batch.pop("labels")[0, 1:]
                    logprobs = torch.log_softmax(model(**batch).logits[0, :-1], -1)
                    keep = labels != -100
                    expected[form].append(float(logprobs[keep].gather(-1, labels[keep, None]).sum()))
                    counts[form].append(int(keep.sum()))
    # predict_batch runs each question once and continues its options from its key/value cache:
    # the same numbers as each option scored as a whole conversation of its own
    rows = predict_batch(model, processor, chosen, clips, prompts_of(chosen), max_new_tokens=2)
    assert [x for row in rows for x in row["option_logprobs"]] == pytest.approx(expected["letter"], abs=1e-3)
    assert [c for row in rows for c in row["option_token_counts"]] == counts["letter"]
    # the cloze form: each option's text alone as the reply, without its letter
    assert [x for row in rows for x in row["option_text_logprobs"]] == pytest.approx(expected["text"], abs=1e-3)
    assert [c for row in rows for c in row["option_text_token_counts"]] == counts["text"]
    assert len(set(counts["letter"])) > 1  # options of different lengths: the continuations were padded
    # no new tokens: no free-text answer (the parsers skip it), the same option scores
    ranked = predict_batch(model, processor, chosen, clips, prompts_of(chosen), max_new_tokens=0)
    assert [row["output"] for row in ranked] == [None] * len(chosen)
    assert [row["option_logprobs"] for row in ranked] == [row["option_logprobs"] for row in rows]


def test_a_batch_encodes_each_clip_once(setup, monkeypatch):
    _, model, processor, items = setup
    chosen = items[:4]  # two questions on clip0, two on clip1
    for mode in ("audio", "noise"):
        source = ClipSource(items, mode, processor.load_audio)
        clips = [source.clip(i) for i in chosen]
        assert clips[0] is clips[1] and clips[2] is clips[3] and clips[0] is not clips[2]
    alone = [predict_batch(model, processor, [item], [clip], prompts_of([item]), max_new_tokens=2)[0]
             for item, clip in zip(chosen, clips)]
    calls = []
    encode = model.encode_audio
    monkeypatch.setattr(model, "encode_audio", lambda *a: calls.append(1) or encode(*a))
    together = predict_batch(model, processor, chosen, clips, prompts_of(chosen), max_new_tokens=2)
    assert len(calls) == 2
    for one, row in zip(alone, together):
        assert row["output"] == one["output"]
        assert row["option_logprobs"] == pytest.approx(one["option_logprobs"], abs=1e-3)


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_end_to_end_and_resume(setup, capsys):
    root, _, _, items = setup
    out = root / "preds.jsonl"
    base = ["--checkpoint", str(root / "ckpt"), "--questions", str(root / "q.csv"), "--out", str(out),
            "--batch-size", "4", "--max-new-tokens", "4"]
    assert main(base + ["--limit", "2"]) == 0
    assert len(read(out)) == 2
    assert main(base) == 0  # resumes: only the other four
    rows = read(out)
    assert [r["id"] for r in rows] == [i["id"] for i in items]
    for row, item in zip(rows, items):
        assert row["options"] == item["options"] and row["answer_index"] == item["answer_index"]
        assert row["audio_mode"] == "audio" and row["audio_shown"] == item["audio"]
        assert isinstance(row["output"], str) and row["prompt"].startswith("Question: ")
        assert len(row["option_logprobs"]) == 4 and all(math.isfinite(x) and x < 0 for x in row["option_logprobs"])
        assert all(c > 0 for c in row["option_token_counts"])
    size = out.stat().st_size
    assert main(base) == 0 and out.stat().st_size == size  # nothing left to do
    assert "0 to answer" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="holds audio mode"):
        main(base + ["--audio-mode", "none"])


def test_predict_ablation_rows(setup):
    root, _, _, items = setup
    out = root / "other.jsonl"
    assert main(["--checkpoint", str(root / "ckpt"), "--questions", str(root / "q.csv"), "--out", str(out),
                 "--audio-mode", "other", "--limit", "2", "--max-new-tokens", "2", "--one-shot"]) == 0
    rows = read(out)
    assert [r["audio_mode"] for r in rows] == ["other", "other"]
    assert all(r["audio_shown"] != r["audio"] for r in rows) and all(r["one_shot"] for r in rows)
    assert rows[0]["prompt"].startswith("Question: Which family of instruments")


def test_captions_generate_then_score(setup):
    """`musicllm eval captions` phase 1 with the same tiny checkpoint: one row per clip, resumable."""
    from eval.captioning import main as captions_main

    root, _, _, _ = setup
    clips = [{"id": f"clip{k}", "audio": f"audio/clip{k}.wav", "duration": 1.0, "source": "test", "license": "cc0",
              "split": "test", "labels": {"genre": "rock", "tempo_bpm": 120.0}} for k in range(3)]
    (root / "manifest.jsonl").write_text("".join(json.dumps(c) + "\n" for c in clips))
    messages = [{"role": "user", "content": "<|audio|>\nDescribe this music."},
                {"role": "assistant", "content": "A rock song."}]
    (root / "captions.jsonl").write_text(json.dumps({"id": "clip0:caption:0", "task": "caption", "messages": messages}) + "\n")
    out = root / "caps.jsonl"
    args = ["--checkpoint", str(root / "ckpt"), "--manifest", str(root / "manifest.jsonl"), "--out", str(out),
            "--max-new-tokens", "3", "--batch-size", "2"]
    assert captions_main(args + ["--limit", "2"]) == 0
    assert captions_main(args) == 0
    rows = read(out)
    assert [r["id"] for r in rows] == ["clip0", "clip1", "clip2"]
    assert rows[0]["references"] == ["A rock song."] and rows[1]["references"] == []
    assert rows[0]["labels"]["genre"] == "rock" and isinstance(rows[0]["caption"], str)
    scores = json.loads((root / "caps.scores.json").read_text())["runs"][0]
    assert scores["n"] == 3 and scores["n_with_references"] == 1 and scores["attributes"]["genre"]["n"] == 3

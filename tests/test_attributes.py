"""Attribute heads: trained on the manifest's labels, handed to the LLM as class words, frozen after.

What users rely on: `python -m training.attributes` turns a checkpoint into one whose audio
tokens start with attribute tokens, learnt from the train clips and scored on the valid ones;
the next stage trains the rest of the projector and leaves the heads as they were; a manifest it
cannot train on is an error that names it.
"""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from musicllm.checkpoint import load_checkpoint, save_checkpoint
from musicllm.projector import word_table
from training.attributes import ATTRIBUTES, main as attributes_main
from training.train import main as train_main

NOTES = {"C": 261.63, "E": 329.63, "G": 392.0, "A": 440.0}
SMALL_LLM = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2}


def corpus(root):
    """Two-second tones: three train clips and one valid clip per note, labelled with the note
    as the tonic (no other labels: the other heads have nothing to learn from)."""
    (root / "clips").mkdir(parents=True)
    rows, t = [], np.arange(32000) / 16000
    for name, freq in NOTES.items():
        for index, (split, level) in enumerate((("train", 0.1), ("train", 0.2), ("train", 0.4), ("valid", 0.3))):
            path = root / "clips" / f"{name}{index}.wav"
            sf.write(path, (level * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
            rows.append({"id": f"{name}{index}", "audio": f"clips/{name}{index}.wav", "split": split,
                         "labels": {"key": name}})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    captions = [{"id": f"{r['id']}:caption", "audio": [r["audio"]], "task": "caption",
                 "provenance": {"writer": "test", "model": "none", "prompt_version": "0", "seed": 0},
                 "messages": [{"role": "user", "content": "<|audio|>\nDescribe the music."},
                              {"role": "assistant", "content": f"A tone on {r['labels']['key']}."}]} for r in rows]
    (root / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions))


def test_heads_learn_the_labels_and_stay_frozen_in_the_next_stage(tmp_path):
    from musicllm.tiny import build_tiny

    corpus(tmp_path)
    torch.manual_seed(0)
    texts = ["A tone on C.", "A tone on E.", "A tone on G minor.", "Describe the music."] * 20
    model, processor = build_tiny(texts, 300, stack_factor=10, text_overrides=SMALL_LLM)
    save_checkpoint(model, processor, tmp_path / "start", export=False)
    before = processor.num_audio_tokens(np.zeros(32000, dtype=np.float32))

    assert attributes_main(["--model", str(tmp_path / "start"), "--manifest", str(tmp_path / "manifest.jsonl"),
                            "--feature-cache", str(tmp_path / "cache"), "--out", str(tmp_path / "heads"),
                            "--epochs", "200"]) == 0
    report = json.loads((tmp_path / "heads" / "attributes.json").read_text())
    assert report["valid_accuracy"]["tonic"] == 1.0  # a pure tone's chroma names it
    assert report["train_clips"] == 12 and report["valid_clips"] == 4
    model, processor = load_checkpoint(tmp_path / "heads")
    names = [a["name"] for a in model.config.audio_attributes]
    assert names == list(ATTRIBUTES)
    slots = sum(a["slots"] for a in model.config.audio_attributes)
    assert processor.num_audio_tokens(np.zeros(32000, dtype=np.float32)) == before + slots
    # The tonic tokens of an A tone are the embeddings of " key:" and the word " A", padded to the
    # longest tonic (" C#").
    tonic = model.config.audio_attributes[names.index("tonic")]
    frames, frame_lens = model.encode_audio(**processor.audio_windows(
        [(0.3 * np.sin(2 * np.pi * NOTES["A"] * np.arange(32000) / 16000)).astype(np.float32)]))
    with torch.no_grad():
        position = sum(a["slots"] for a in model.config.audio_attributes[:names.index("tonic")])
        tokens = model.project_audio(frames, frame_lens)[position:position + tonic["slots"]]
    embed = model.get_input_embeddings().weight
    assert processor.tokenizer.decode(tonic["label_ids"]) == " key:"
    expected = tonic["label_ids"] + word_table(tonic)[tonic["classes"].index("A")].tolist()
    torch.testing.assert_close(tokens, embed[expected])
    # The key head learns keys, not notes: a D tone, a tonic no training clip had, is named D.
    frames, frame_lens = model.encode_audio(**processor.audio_windows(
        [(0.3 * np.sin(2 * np.pi * 293.66 * np.arange(32000) / 16000)).astype(np.float32)]))
    with torch.no_grad():
        logits = model.multi_modal_projector.attribute_logits(model.multi_modal_projector.window_stats(frames, frame_lens))
    assert tonic["classes"][int(logits[names.index("tonic")].argmax())] == "D"

    # Stage 1 from it: the projector's other parts train, the heads do not.
    settings = ["--stage=align", f"--out={tmp_path / 'align'}", "--max_steps=3", "--batch_size=2", "--save_every=3",
                "--optim.warmup_steps=1", "--optim.lr=0.01", f"--model.init_from={tmp_path / 'heads'}",
                f"--data.train={json.dumps([str(tmp_path / 'captions.jsonl')])}",
                f"--data.feature_cache={tmp_path / 'cache'}"]
    assert train_main(settings) == 0
    aligned, _ = load_checkpoint(tmp_path / "align" / "model")
    old, new = model.multi_modal_projector, aligned.multi_modal_projector
    torch.testing.assert_close(new.attribute_head.state_dict(), old.attribute_head.state_dict())
    torch.testing.assert_close(new.attribute_key_head.state_dict(), old.attribute_key_head.state_dict())
    torch.testing.assert_close(new.attribute_scale, old.attribute_scale)
    torch.testing.assert_close(new.attribute_key_scale, old.attribute_key_scale)
    assert not torch.equal(new.linear_1.weight, old.linear_1.weight)


def test_the_sound_head_tells_silence_and_noise_from_music(tmp_path):
    """Heads trained on two manifests, the tones and data_gen.not_music's clips: a labelled clip is
    music unless its labels say otherwise, and a silence, a hiss and a tone the heads never heard
    are named " silence", " noise" and " music"."""
    from data_gen.not_music import synthesize
    from musicllm.tiny import build_tiny

    corpus(tmp_path)
    synthesize(tmp_path / "not_music", clips=18, seconds=(2.0, 2.0), sample_rate=16000)
    torch.manual_seed(0)
    model, processor = build_tiny(["A tone on C.", "Describe the music."] * 20, 300, stack_factor=10,
                                  text_overrides=SMALL_LLM)
    save_checkpoint(model, processor, tmp_path / "start", export=False)
    assert attributes_main(["--model", str(tmp_path / "start"), "--manifest", str(tmp_path / "manifest.jsonl"),
                            str(tmp_path / "not_music" / "manifest.jsonl"), "--feature-cache", str(tmp_path / "cache"),
                            "--out", str(tmp_path / "heads"), "--epochs", "200"]) == 0
    report = json.loads((tmp_path / "heads" / "attributes.json").read_text())
    assert report["train_clips"] == 12 + 6 and report["valid_clips"] == 4 + 6
    assert report["valid_accuracy"]["sound"] == 1.0
    model, processor = load_checkpoint(tmp_path / "heads")
    names = [a["name"] for a in model.config.audio_attributes]
    sound = model.config.audio_attributes[names.index("sound")]
    t = np.arange(32000) / 16000
    heard = [np.zeros(32000, dtype=np.float32),
             (0.05 * np.random.default_rng(7).standard_normal(32000)).astype(np.float32),
             (0.3 * np.sin(2 * np.pi * 349.23 * t)).astype(np.float32)]  # an F: no training tone
    frames, frame_lens = model.encode_audio(**processor.audio_windows(heard))
    with torch.no_grad():
        logits = model.multi_modal_projector.attribute_logits(model.multi_modal_projector.window_stats(frames, frame_lens))
    assert [sound["classes"][int(i)] for i in logits[names.index("sound")].argmax(-1)] == ["silence", "noise", "music"]
    assert processor.tokenizer.decode(sound["label_ids"]) == " sound:"
    # In the silence and the hiss every other attribute's words are blanks after its label (the LLM
    # reads " sound: noise tempo: key: ..."); the tone's are words
    embed = model.get_input_embeddings().weight
    with torch.no_grad():
        tokens = model.multi_modal_projector.attribute_tokens(
            model.multi_modal_projector.window_stats(frames, frame_lens), embed)  # windows, slots, D
    ids = torch.cdist(tokens, embed[None].expand(len(tokens), -1, -1)).argmin(-1)  # each slot's row: at distance 0
    for window, heard_sound in enumerate(["silence", "noise", "music"]):
        at = 0
        for spec in model.config.audio_attributes:
            words = ids[window, at + len(spec["label_ids"]):at + spec["slots"]].tolist()
            assert ids[window, at:at + len(spec["label_ids"])].tolist() == spec["label_ids"]
            blank = all(token == spec["pad_id"] for token in words)
            assert blank == (heard_sound != "music" and spec["name"] != "sound"), (heard_sound, spec["name"], words)
            at += spec["slots"]


def test_a_manifest_without_train_clips_is_an_error_naming_it(tmp_path, capsys):
    from musicllm.tiny import build_tiny

    corpus(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    (tmp_path / "valid_only.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["split"] == "valid"))
    model, processor = build_tiny(["A tone on C."] * 20, 300, stack_factor=10, text_overrides=SMALL_LLM)
    save_checkpoint(model, processor, tmp_path / "start", export=False)
    assert attributes_main(["--model", str(tmp_path / "start"), "--manifest", str(tmp_path / "valid_only.jsonl"),
                            "--feature-cache", str(tmp_path / "cache"), "--out", str(tmp_path / "heads")]) == 2
    error = capsys.readouterr().err
    assert "valid_only.jsonl" in error and "no clips with split 'train'" in error
    assert not (tmp_path / "heads").exists()


def test_the_default_recipe_shape_tagger_tags_and_no_frame_tokens(tmp_path):
    """The embedded default's shape on a test-sized LLM: a features encoder with the musicnn tagger,
    no frame tokens (stack_factor 0), no summary. After the heads step each window is exactly its
    attribute tokens; the last are the tagger's five likeliest tags, read off its own outputs; and
    stage 2 with LoRA on the top layer trains nothing below it."""
    from musicllm.configuration import MusicFeaturesConfig
    from musicllm.musicnn import MTT_TAGS, load_musicnn
    from musicllm.tiny import build_tiny
    from training.attributes import INSTRUMENT_FLOOR, TAG_WORDS

    corpus(tmp_path)
    torch.manual_seed(0)
    texts = ["A tone on C.", "A tone on E.", "classical strings piano drums", "Describe the music."] * 20
    model, processor = build_tiny(texts, 300, stack_factor=0, audio_window_seconds=30.0, text_overrides=SMALL_LLM,
                                  audio_config=MusicFeaturesConfig(tagger="MTT_musicnn"))
    model.audio_tower.tagger.load_state_dict(load_musicnn("MTT_musicnn").state_dict())
    save_checkpoint(model, processor, tmp_path / "start", export=False)
    assert processor.num_audio_tokens(np.zeros(32000, dtype=np.float32)) == 0  # nothing but attribute tokens
    assert attributes_main(["--model", str(tmp_path / "start"), "--manifest", str(tmp_path / "manifest.jsonl"),
                            "--feature-cache", str(tmp_path / "cache"), "--out", str(tmp_path / "heads"),
                            "--epochs", "50"]) == 0
    model, processor = load_checkpoint(tmp_path / "heads")
    specs = model.config.audio_attributes
    assert [a["name"] for a in specs] == [*ATTRIBUTES, "tags"] and "no vocal" not in specs[-1]["classes"]
    # the instruments it is unsure of are not named (projector.attribute_tokens pads their words)
    assert [a.get("min_probability") for a in specs if a["multi_label"]] == [INSTRUMENT_FLOOR, None]
    # each head that the valid clips label (here the tonic, and the sound: a labelled clip is music)
    # calibrated on them
    report = json.loads((tmp_path / "heads" / "attributes.json").read_text())
    assert report["temperatures"] == {a["name"]: a["temperature"] for a in specs if "temperature" in a} != {}
    assert set(report["temperatures"]) == {"tonic", "sound"}
    slots = sum(a["slots"] for a in specs)
    clip = (0.3 * np.sin(2 * np.pi * NOTES["A"] * np.arange(32000) / 16000)).astype(np.float32)
    assert processor.num_audio_tokens(clip) == slots  # one 30 s window

    frames, frame_lens = model.encode_audio(**processor.audio_windows([clip]))
    with torch.no_grad():
        tokens = model.project_audio(frames, frame_lens)
    assert tokens.shape[0] == slots
    # the tag tokens are the embeddings of the tagger's top tags for this clip
    from musicllm.musicnn import tag

    taggram, _ = tag(load_musicnn("MTT_musicnn"), torch.from_numpy(clip))
    scores = taggram.mean(0)
    kept = [i for i, name in enumerate(MTT_TAGS) if name in specs[-1]["classes"]]
    top = sorted(kept, key=lambda i: -float(scores[i]))[:TAG_WORDS]
    embed = model.get_input_embeddings().weight
    table = word_table(specs[-1])
    words = table[[specs[-1]["classes"].index(MTT_TAGS[i]) for i in top]].flatten().tolist()
    expected = embed[specs[-1]["label_ids"] + words]  # " tags:" and the words
    torch.testing.assert_close(tokens[-specs[-1]["slots"]:], expected)

    # stage 2, LoRA on the top layer: only adapter weights of that layer train
    (tmp_path / "convs.jsonl").write_text((tmp_path / "captions.jsonl").read_text())
    settings = ["--stage=instruct", f"--out={tmp_path / 'instruct'}", "--max_steps=2", "--batch_size=2",
                "--save_every=2", "--optim.warmup_steps=1", f"--model.init_from={tmp_path / 'heads'}",
                "--lora.top_layers=1", f"--data.train={json.dumps([str(tmp_path / 'convs.jsonl')])}",
                f"--data.feature_cache={tmp_path / 'cache'}"]
    assert train_main(settings) == 0
    from safetensors.torch import load_file

    trained = load_file(next((tmp_path / "instruct" / "checkpoints").glob("step-*")) / "trainable.safetensors")
    assert trained and all("lora_" in name and ".layers.1." in name for name in trained), sorted(trained)[:4]


def test_calibration_makes_a_head_as_sure_as_it_is_right_and_keeps_its_answers():
    """A head right on two windows in three that gives its answer a logit of 8 (sure of every
    one) gets the temperature under which its answers are about 2/3 likely (8 / ln 4, about 5.8),
    as its attribute's `temperature`; its answers stay the same, and a composed attribute is left
    without one."""
    from types import SimpleNamespace

    from torch.nn import functional as F

    from training.attributes import calibrate

    torch.manual_seed(0)
    truth = torch.randint(0, 3, (600,))
    choice = torch.where(torch.rand(600) < 2 / 3, truth, (truth + 1) % 3)
    logits = F.one_hot(choice, 3).float() * 8
    heads = SimpleNamespace(attributes=[{"name": "dynamics", "multi_label": False, "temperature": 2.0},
                                        {"name": "mood", "multi_label": False, "composed_of": ["dynamics"]}])
    heads.attribute_logits = lambda stats: [logits / heads.attributes[0].get("temperature", 1.0), logits]
    temperatures = calibrate(heads, torch.zeros(600, 1), [truth, truth])
    assert set(temperatures) == {"dynamics"} and 5.0 < temperatures["dynamics"] < 6.8
    assert heads.attributes[0]["temperature"] == temperatures["dynamics"] and "temperature" not in heads.attributes[1]
    calibrated = heads.attribute_logits(None)[0]
    assert torch.equal(calibrated.argmax(-1), choice)
    share = calibrated.softmax(-1).max(-1).values.mean().item()
    assert abs(share - (choice == truth).float().mean().item()) < 0.05  # as sure as it is right


def test_each_head_is_kept_at_the_epoch_of_its_own_best_validation_score():
    """The key, tempo-and-metre, dynamics and shared heads train apart, so each keeps the epoch
    where the validation clips scored it best: here the key at the first epoch offered, the tempo
    and the shared head (style, instruments) at the second and the dynamics at the third, each with
    its own parameters of that epoch."""
    from musicllm.configuration import MusicFeaturesConfig
    from musicllm.projector import MusicLLMProjector
    from musicllm.tiny import build_tiny
    from training.attributes import BestHeads, attribute_specs

    model, processor = build_tiny(["C# minor", "A major"] * 20, 300, stack_factor=0, text_overrides=SMALL_LLM,
                                  audio_config=MusicFeaturesConfig(key_sharpness=20.0))
    model.config.audio_attributes = attribute_specs(processor.tokenizer, model.config.audio_config)
    projector = MusicLLMProjector(model.config)
    best = BestHeads(projector)
    snapshots = []
    for epoch, (key, tempo, level, shared) in zip((20, 40, 60), ((0.9, 0.5, 0.6, 0.5), (0.8, 0.7, 0.5, 0.9),
                                                               (0.7, 0.7, 0.8, 0.6))):
        with torch.no_grad():
            for parameter in projector.parameters():
                parameter.add_(torch.randn_like(parameter))  # another epoch's weights
        snapshots.append({k: v.clone() for k, v in projector.state_dict().items()})
        best.offer(epoch, {"tonic": key, "mode": key, "tempo": tempo, "bpm": tempo, "metre": tempo,
                           "style": shared, "dynamics": level, "instruments": shared})
    assert best.restore() == {"key": 20, "tempogram": 40, "level": 60, "shared": 40}  # a tie keeps the earlier
    state = projector.state_dict()
    for name, value in state.items():
        epoch = (0 if name.startswith("attribute_key_") else 2 if name.startswith("attribute_level_")
                 else 1 if name.startswith("attribute_") else 2)
        torch.testing.assert_close(value, snapshots[epoch][name], msg=name)


def test_stage_2_can_hear_heads_fitted_to_its_clips_and_the_model_keep_the_best_held_out_ones(tmp_path):
    """The default's recipe: `fitted_out` is the checkpoint with the heads as the last epoch left
    them (stage 2 trains on it), `out` the one with each head at its best held-out score and
    calibrated; `with_heads` puts the latter's heads into a model trained from the former and
    leaves everything else of it as it was. A model with other attributes is refused, by name."""
    from musicllm.tiny import build_tiny
    from training.attributes import head_state, with_heads

    corpus(tmp_path)
    torch.manual_seed(0)
    model, processor = build_tiny(["A tone on C.", "Describe the music."] * 20, 300, stack_factor=10,
                                  text_overrides=SMALL_LLM)
    save_checkpoint(model, processor, tmp_path / "start", export=False)
    assert attributes_main(["--model", str(tmp_path / "start"), "--manifest", str(tmp_path / "manifest.jsonl"),
                            "--feature-cache", str(tmp_path / "cache"), "--out", str(tmp_path / "heads"),
                            "--epochs", "60", "--fitted-out", str(tmp_path / "fitted"), "--min-valid-clips", "4"]) == 0
    report = json.loads((tmp_path / "heads" / "attributes.json").read_text())
    assert report["epochs"]["key"] < 60  # the tones' keys are right from early on: kept there
    # With fewer validation clips than `min_valid_clips` (4 here, 50 by default), no epoch is chosen by them
    assert attributes_main(["--model", str(tmp_path / "start"), "--manifest", str(tmp_path / "manifest.jsonl"),
                            "--feature-cache", str(tmp_path / "cache"), "--out", str(tmp_path / "unchosen"),
                            "--epochs", "60"]) == 0
    assert set(json.loads((tmp_path / "unchosen" / "attributes.json").read_text())["epochs"].values()) == {60}
    best, _ = load_checkpoint(tmp_path / "heads")
    fitted, _ = load_checkpoint(tmp_path / "fitted")
    tonic = [a for a in best.config.audio_attributes if a["name"] == "tonic"][0]
    assert "temperature" in tonic
    differ = [k for k, v in head_state(best.multi_modal_projector).items()
              if not torch.equal(v, head_state(fitted.multi_modal_projector)[k])]
    assert any(k.startswith("attribute_key_") for k in differ)

    with torch.no_grad():  # stand-in for stage 2: the LLM trained on the fitted heads' words
        for parameter in fitted.language_model.parameters():
            parameter.add_(0.01)
    save_checkpoint(fitted, processor, tmp_path / "trained", export=False)
    with_heads(tmp_path / "trained", tmp_path / "heads", tmp_path / "final")
    final, _ = load_checkpoint(tmp_path / "final")
    torch.testing.assert_close(head_state(final.multi_modal_projector), head_state(best.multi_modal_projector))
    torch.testing.assert_close(final.language_model.state_dict(), fitted.language_model.state_dict())
    assert final.config.audio_attributes == best.config.audio_attributes  # the calibration too

    with pytest.raises(ValueError, match="not the same"):
        with_heads(tmp_path / "trained", tmp_path / "start", tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_the_window_can_name_every_instrument_a_training_clip_has():
    """A window names as many instruments as the procedural corpus puts in one clip (its roles and
    drums): with fewer, a clip's answer lists instruments the LLM never read, and it learns to add
    names to what its heads hand it."""
    from data_gen.procedural.composer import ROLES
    from data_gen.procedural.styles import STYLES, TEXTURE_ROLES
    from training.attributes import MULTI_LABEL

    most = max(len(ROLES if s.texture == "band" else TEXTURE_ROLES[s.texture]) + bool(s.kits) for s in STYLES.values())
    assert MULTI_LABEL["instruments"] >= most


def test_the_default_trains_on_answers_that_state_only_what_its_tokens_tell():
    """Captions and answers written from `heard(clip)` give the tempo the bpm head can name,
    hedged, and never a section or a time in the clip: the LLM reads neither the exact BPM nor
    when a chorus starts, and answers that state them teach it to invent digits."""
    import re

    from data_gen.writers.base import TASKS
    from data_gen.writers.template import TemplateWriter
    from training.attributes import heard

    clip = {"id": "c1", "audio": "clips/c1.flac", "split": "train",
            "labels": {"tempo_bpm": 136, "key": "D#", "mode": "major", "time_signature": "4/4", "genre": "folk",
                       "mood": "happy", "dynamics": "medium", "instruments": ["recorder", "acoustic bass"],
                       "sections": [{"name": "intro", "start": 0.0, "end": 3.5}, {"name": "chorus", "start": 3.5, "end": 14.3}]}}
    writer = TemplateWriter()
    answers = [record["messages"][-1]["content"] for seed in range(12)
               for record in writer.write([heard(clip)], TASKS, seed=seed) if isinstance(record, dict)]
    said = " ".join(answers)
    assert len(answers) > 40 and re.findall(r"\b140 BPM", said), said[:500]
    assert not re.findall(r"\b136\b", said) and not re.findall(r"\b\d:\d\d\b", said)
    assert not re.findall(r"\b(intro|chorus)\b", said, re.I), said[:500]
    assert clip["labels"]["sections"] and clip["labels"]["tempo_bpm"] == 136  # the clip itself is unchanged


def test_the_key_head_turns_with_the_music():
    """Transposing music by k semitones rotates every pitch-class block of its features by k: the
    key head's tonic then moves by k and its mode stays (what it learns of one key holds for all
    twelve), and a projector's tonic and mode are the joint key's two sums."""
    from musicllm.configuration import MusicFeaturesConfig
    from musicllm.projector import MusicLLMProjector
    from musicllm.tiny import build_tiny
    from training.attributes import attribute_specs

    torch.manual_seed(0)
    audio = MusicFeaturesConfig(key_sharpness=20.0, bass_chroma=True)
    model, processor = build_tiny(["C# minor", "A major"] * 20, 300, stack_factor=0, text_overrides=SMALL_LLM,
                                  audio_config=audio)
    config = model.config
    config.audio_attributes = attribute_specs(processor.tokenizer, config.audio_config)
    projector = MusicLLMProjector(config).eval()
    names = [a["name"] for a in config.audio_attributes]
    blocks = config.audio_attributes[names.index("tonic")]["pitch_features"]
    assert len(blocks) == 11 and all(len(block) == 12 for block in blocks)
    C = audio.hidden_size
    assert blocks[0][0] == audio.n_mels and blocks[-1][0] == C + audio.n_mels  # chroma's mean, then its spread

    stats = torch.randn(3, 2 * C)
    shifted = stats.clone()
    index = torch.tensor(blocks)
    shifted[:, index] = stats[:, index.roll(5, dims=1)]  # up 5 semitones: pitch class p takes p - 5's value
    with torch.no_grad():
        before, after = projector.attribute_logits(stats), projector.attribute_logits(shifted)
        joint = projector.key_logits(stats)
    tonic, mode = names.index("tonic"), names.index("mode")
    torch.testing.assert_close(after[tonic], before[tonic].roll(5, dims=1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after[mode], before[mode], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(before[tonic], joint.logsumexp(1))
    torch.testing.assert_close(before[mode], joint.logsumexp(2))


def test_the_dynamics_head_reads_only_how_loud_the_window_is_played():
    """With the DSP features the dynamics has a head of its own over the level features (log-mel,
    onset, RMS, centroid, flatness; their means and spreads): the key, tempogram and tagger
    features, from which the shared head learned the training clips' dynamics by heart, do not
    move its answer; the level does. The shared head no longer names the dynamics."""
    from musicllm.configuration import MusicFeaturesConfig
    from musicllm.projector import MusicLLMProjector, source
    from musicllm.tiny import build_tiny
    from training.attributes import attribute_specs

    torch.manual_seed(0)
    audio = MusicFeaturesConfig(key_sharpness=20.0, bass_chroma=True, bass_tempogram=True)
    model, processor = build_tiny(["soft", "loud"] * 20, 300, stack_factor=0, text_overrides=SMALL_LLM,
                                  audio_config=audio)
    config = model.config
    config.audio_attributes = attribute_specs(processor.tokenizer, audio)
    projector = MusicLLMProjector(config).eval()
    names = [a["name"] for a in config.audio_attributes]
    dynamics = config.audio_attributes[names.index("dynamics")]
    assert source(dynamics) == "level"
    assert [a["name"] for a in config.audio_attributes if source(a) == "head"] == ["sound", "style", "instruments"]
    C, M = audio.hidden_size, audio.n_mels
    level = torch.tensor(dynamics["level_features"])
    assert len(level) == 2 * (M + 4) and int(level[M + 1]) == M + 25  # the RMS level's mean, after the mel and onset

    stats = torch.randn(4, 2 * C)
    other = torch.ones(2 * C, dtype=torch.bool)
    other[level] = False
    changed = stats.clone()
    changed[:, other] = torch.randn(4, int(other.sum()))  # another key, tempo, style...
    louder = stats.clone()
    louder[:, level] += 3.0
    with torch.no_grad():
        before, after, loud = (projector.attribute_logits(x)[names.index("dynamics")] for x in (stats, changed, louder))
    torch.testing.assert_close(after, before)
    assert not torch.allclose(loud, before)


def clicks(bpm: float, seconds: float = 8.0, level: float = 0.5, beats_per_bar: int = 1) -> np.ndarray:
    """A click track: a 20 ms decaying 1 kHz blip on every beat, the bar's first four times as loud."""
    t = np.arange(int(seconds * 16000)) / 16000
    wave = np.zeros_like(t)
    blip = np.sin(2 * np.pi * 1000 * t[:320]) * np.exp(-t[:320] / 0.005)
    for beat, start in enumerate(np.arange(0.0, seconds - 0.02, 60.0 / bpm)):
        i = int(start * 16000)
        wave[i:i + 320] += blip * (1.0 if beat % beats_per_bar else 4.0) / 4.0
    return (level * wave).astype(np.float32)


def heard_by_trained_heads(root, rows: list[dict], texts: list[str], clips: list[np.ndarray],
                           audio_config=None) -> dict[str, list[str]]:
    """Heads trained on ROOT's clips (`rows`, the manifest) for a tiny model (with the features of
    `audio_config`); per attribute, the class each of `clips` gets."""
    from musicllm.tiny import build_tiny

    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.manual_seed(0)
    features = {"audio_config": audio_config} if audio_config is not None else {}
    model, processor = build_tiny(texts * 20, 300, stack_factor=10, text_overrides=SMALL_LLM, **features)
    save_checkpoint(model, processor, root / "start", export=False)
    assert attributes_main(["--model", str(root / "start"), "--manifest", str(root / "manifest.jsonl"),
                            "--feature-cache", str(root / "cache"), "--out", str(root / "heads"),
                            "--epochs", "200"]) == 0
    model, processor = load_checkpoint(root / "heads")
    projector = model.multi_modal_projector
    heard = {a["name"]: [] for a in model.config.audio_attributes}
    for clip in clips:
        frames, frame_lens = model.encode_audio(**processor.audio_windows([clip]))
        with torch.no_grad():
            logits = projector.attribute_logits(projector.window_stats(frames, frame_lens))
        for attribute, scores in zip(model.config.audio_attributes, logits):
            heard[attribute["name"]].append(attribute["classes"][int(scores[0].argmax())])
    return heard


def test_the_tempo_head_names_a_tempo_no_clip_had(tmp_path):
    """The tempo head reads the tempogram along its bins, so what it learns of one tempo holds for
    all: trained on click tracks at five tempi, it puts a click track at 130 BPM, a tempo no clip
    had, in its band (fast) and at its BPM."""
    (tmp_path / "clips").mkdir()
    rows = []
    for split, tempi in (("train", (60, 75, 100, 150, 180, 62, 78, 104, 144, 176)), ("valid", (70, 90, 160))):
        for bpm in tempi:
            name = f"{split}{bpm}"
            sf.write(tmp_path / "clips" / f"{name}.wav", clicks(bpm), 16000)
            rows.append({"id": name, "audio": f"clips/{name}.wav", "split": split, "labels": {"tempo_bpm": bpm}})
    heard = heard_by_trained_heads(tmp_path, rows, ["slow", "fast 120"], [clicks(130)])
    band, bpm = heard["tempo"][0], heard["bpm"][0]
    assert band == "fast" and bpm == "130", (band, bpm)


def test_the_metre_head_hears_the_bar_at_a_tempo_no_clip_had(tmp_path):
    """The metre head reads the tempogram's pattern wherever the tempo puts it: trained on accented
    click tracks in 3/4 and 4/4 at three tempi, it tells the two apart at a tempo no clip had."""
    (tmp_path / "clips").mkdir()
    rows = []
    for split, tempi in (("train", (80, 100, 140)), ("valid", (110,))):
        for bpm in tempi:
            for metre, beats in (("3/4", 3), ("4/4", 4)):
                name = f"{split}{bpm}_{beats}"
                sf.write(tmp_path / "clips" / f"{name}.wav", clicks(bpm, 10.0, beats_per_bar=beats), 16000)
                rows.append({"id": name, "audio": f"clips/{name}.wav", "split": split,
                             "labels": {"time_signature": metre}})
    heard = heard_by_trained_heads(tmp_path, rows, ["3/4", "4/4"],
                                   [clicks(170, 10.0, beats_per_bar=beats) for beats in (3, 4)])
    assert heard["metre"] == ["3/4", "4/4"]


def bass_walk(bpm: float, beats_per_bar: int, seconds: float = 10.0) -> np.ndarray:
    """A bass struck alike on every beat (no accent), changing note at each bar of `beats_per_bar` beats."""
    beat = np.arange(int(60.0 / bpm * 16000)) / 16000
    wave = np.zeros(int(seconds * 16000))
    for index, start in enumerate(np.arange(0.0, seconds - 60.0 / bpm, 60.0 / bpm)):
        hz = (110.0, 146.83, 130.81, 164.81)[(index // beats_per_bar) % 4]  # A2 D3 C3 E3
        i = int(round(start * 16000))
        wave[i:i + len(beat)] += 0.3 * np.sin(2 * np.pi * hz * beat) * np.exp(-beat / 0.3)
    return wave.astype(np.float32)


def test_the_metre_head_hears_the_bar_in_the_bass_when_every_beat_sounds_alike(tmp_path):
    """With `bass_tempogram` (the default's features) the metre head also reads where the bass
    line changes note: trained on bass lines struck alike on every beat, a note to the bar of 3
    or 4 beats, it tells 3/4 from 4/4 at two tempi no clip had."""
    from musicllm.configuration import MusicFeaturesConfig

    (tmp_path / "clips").mkdir()
    rows = []
    for split, tempi in (("train", (80, 100, 120, 140)), ("valid", (110,))):
        for bpm in tempi:
            for metre, beats in (("3/4", 3), ("4/4", 4)):
                name = f"{split}{bpm}_{beats}"
                sf.write(tmp_path / "clips" / f"{name}.wav", bass_walk(bpm, beats), 16000)
                rows.append({"id": name, "audio": f"clips/{name}.wav", "split": split,
                             "labels": {"time_signature": metre}})
    heard = heard_by_trained_heads(tmp_path, rows, ["3/4", "4/4"],
                                   [bass_walk(bpm, beats) for bpm in (90, 130) for beats in (3, 4)],
                                   audio_config=MusicFeaturesConfig(bass_tempogram=True))
    assert heard["metre"] == ["3/4", "4/4", "3/4", "4/4"]


def triad(mode: str, bpm: float, level: float, seconds: float = 8.0) -> np.ndarray:
    """A C major or C minor triad sustained over a click track at `bpm`, at `level`."""
    t = np.arange(int(seconds * 16000)) / 16000
    third = 311.13 if mode == "minor" else 329.63
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.63, third, 392.0)) / 3
    return (level * (0.6 * chord + clicks(bpm, seconds))).astype(np.float32)


def test_the_mood_comes_from_its_parts_even_with_no_mood_label(tmp_path):
    """The mood has no head of its own: it is composed from the mode, tempo, dynamics and style
    heads as the corpus defines it. Trained on clips that carry those labels and never a mood, the
    heads name the mood of clips by what they are made of: fast, loud and minor is tense; slow,
    soft and major is calm."""
    from data_gen.procedural.mood import mood

    (tmp_path / "clips").mkdir()
    rows = []
    for index, (mode, bpm, dynamics) in enumerate([(m, b, d) for m in ("major", "minor") for b in (60, 100, 170)
                                                   for d in ("soft", "loud")] * 2):
        split = "valid" if index % 5 == 4 else "train"
        name = f"c{index}"
        sf.write(tmp_path / "clips" / f"{name}.wav", triad(mode, bpm + index % 3, 0.05 if dynamics == "soft" else 0.6), 16000)
        rows.append({"id": name, "audio": f"clips/{name}.wav", "split": split,
                     "labels": {"key": "C", "mode": mode, "tempo_bpm": bpm, "dynamics": dynamics, "genre": "rock"}})
    heard = heard_by_trained_heads(tmp_path, rows, ["calm", "tense 170"],
                                   [triad("minor", 165, 0.6), triad("major", 62, 0.05)])
    assert heard["mode"] == ["minor", "major"] and heard["dynamics"] == ["loud", "soft"], heard
    assert heard["mood"] == [mood("minor", 165, "loud"), mood("major", 62, "soft")] == ["tense", "calm"], heard

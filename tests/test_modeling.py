"""The model: audio merge and its count check, save/load, LoRA, the servable export, training."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from musicllm.checkpoint import (
    LANGUAGE_MODEL_DIR, add_lora, export_language_model, load_checkpoint, load_lora, merge_lora, save_checkpoint,
    save_lora,
)

from conftest import audio_question, sine


def batch_for(processor, seconds=(1.0, 3.0), answer=None):
    clips = [[sine(s, freq=220 * (i + 1))] for i, s in enumerate(seconds)]
    return processor([audio_question(answer) for _ in seconds], clips, padding_side="right",
                     with_labels=answer is not None, add_generation_prompt=answer is None)


def logits(model, batch):
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_audio_changes_the_output_and_padding_does_not(tiny_model):
    model, processor = tiny_model
    batch = batch_for(processor)
    out = logits(model, batch)
    assert out.shape[:2] == batch["input_ids"].shape
    other = dict(batch, audio_values=batch["audio_values"].flip(0).clone())
    other["audio_values"][:, :] = torch.randn_like(other["audio_values"]) * 0.1
    assert not torch.allclose(out, logits(model, other))
    # Row 0 alone gives the same logits as row 0 within the padded batch.
    single = batch_for(processor, seconds=(1.0,))
    n = single["input_ids"].shape[1]
    torch.testing.assert_close(logits(model, single)[0], out[0, :n], atol=1e-4, rtol=1e-4)


def test_placeholder_audio_mismatch_is_reported_with_both_counts(tiny_model):
    model, processor = tiny_model
    batch = batch_for(processor, seconds=(1.0,))
    expected = int((batch["input_ids"] == processor.audio_token_id).sum())
    wrong = dict(batch, audio_values=torch.zeros(1, 16000 * 3), audio_lens=torch.tensor([48000]))
    with pytest.raises(ValueError, match=rf"{expected} audio placeholder tokens but the audio gives \d+ audio tokens"):
        model(**wrong)
    with pytest.raises(ValueError, match="no audio was given"):
        model(input_ids=batch["input_ids"])


def test_save_then_load_gives_identical_logits(tiny_model, tmp_path):
    model, processor = tiny_model
    save_checkpoint(model, processor, tmp_path / "ckpt")
    assert not list((tmp_path / "ckpt").rglob("*.bin")), "checkpoints are safetensors only"
    loaded, loaded_processor = load_checkpoint(tmp_path / "ckpt")
    batch = batch_for(processor)
    torch.testing.assert_close(logits(loaded, batch), logits(model, batch), atol=0, rtol=0)
    assert loaded_processor.tokenizer.encode("piano in C") == processor.tokenizer.encode("piano in C")


def test_a_save_that_fails_halfway_leaves_the_checkpoint_that_was_there(tiny_model, tmp_path, monkeypatch):
    """A build killed while saving must not leave half a checkpoint under the real name: the
    quickstart would find the folder, skip the step and fail later on a model that cannot load."""
    model, processor = tiny_model
    save_checkpoint(model, processor, tmp_path / "ckpt", notes={"TRAIN.json": "{}"})
    assert (tmp_path / "ckpt" / "TRAIN.json").read_text() == "{}"
    before = logits(load_checkpoint(tmp_path / "ckpt")[0], batch_for(processor))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(processor), "save_pretrained", disk_full)
    with torch.no_grad():
        model.language_model.get_input_embeddings().weight.add_(0.5)
    for target in ("ckpt", "new"):
        with pytest.raises(OSError, match="No space left"):
            save_checkpoint(model, processor, tmp_path / target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"], "nothing half-written is left beside it"
    torch.testing.assert_close(logits(load_checkpoint(tmp_path / "ckpt")[0], batch_for(processor)), before,
                               atol=0, rtol=0)
    monkeypatch.undo()
    save_checkpoint(model, processor, tmp_path / "ckpt")  # and a save that succeeds replaces it whole
    assert not (tmp_path / "ckpt" / "TRAIN.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_cpu_attention_is_eager_and_agrees_with_sdpa(tiny_model, tmp_path):
    """On CPU the checkpoint loads with eager attention (faster there); a right-padded audio
    batch and a left-padded generation batch give what sdpa gives, to float rounding."""
    model, processor = tiny_model
    save_checkpoint(model, processor, tmp_path / "ckpt")
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    assert loaded.language_model.config._attn_implementation == "eager"
    loaded.language_model.set_attn_implementation("sdpa")
    assert loaded.language_model.config._attn_implementation == "sdpa"
    left = processor([audio_question() for _ in range(2)], [[sine(1.0)], [sine(3.0, freq=330)]],
                     padding_side="left", add_generation_prompt=True)
    for batch in (batch_for(processor), left):
        mask = batch["attention_mask"].bool()
        torch.testing.assert_close(logits(loaded, batch)[mask], logits(model, batch)[mask], atol=1e-5, rtol=1e-4)


def add_visible_lora(model):
    """A LoRA adapter that changes the outputs: a fresh one is a no-op (B = 0)."""
    add_lora(model, r=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)


def test_lora_merged_equals_unmerged_and_adapter_round_trips(tiny_model, tmp_path):
    model, processor = tiny_model
    add_visible_lora(model)
    batch = batch_for(processor)
    unmerged = logits(model, batch)
    save_lora(model, tmp_path / "adapter")
    export_language_model(model, processor.tokenizer, tmp_path / "export")  # merges a copy only
    merge_lora(model)
    torch.testing.assert_close(logits(model, batch), unmerged, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="no LoRA adapter"):
        save_lora(model, tmp_path / "nothing")
    # The export merged a copy: its weights are the merged model's.
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
    merged_q = model.language_model.model.layers[0].self_attn.q_proj.weight
    torch.testing.assert_close(exported.model.layers[0].self_attn.q_proj.weight, merged_q)


def test_adapter_reload_reproduces_outputs(tiny_tokenizer, tmp_path):
    from conftest import small_text_overrides
    from musicllm.modeling import MusicLLMForConditionalGeneration
    from musicllm.processing import MusicLLMProcessor
    from musicllm.tiny import tiny_config

    config = tiny_config(tiny_tokenizer, text_overrides=small_text_overrides(), stack_factor=10)
    torch.manual_seed(1)
    base = MusicLLMForConditionalGeneration(config).eval()
    base.save_pretrained(tmp_path / "base")
    processor = MusicLLMProcessor(tiny_tokenizer, config)
    add_visible_lora(base)
    batch = batch_for(processor)
    expected = logits(base, batch)
    save_lora(base, tmp_path / "adapter")
    fresh = MusicLLMForConditionalGeneration.from_pretrained(tmp_path / "base").eval()
    load_lora(fresh, tmp_path / "adapter")
    torch.testing.assert_close(logits(fresh, batch), expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="unmerged LoRA"):
        save_checkpoint(fresh, processor, tmp_path / "bad")


def test_exported_language_model_matches_on_text(tiny_model, tmp_path):
    model, processor = tiny_model
    save_checkpoint(model, processor, tmp_path / "ckpt")
    export = tmp_path / "ckpt" / LANGUAGE_MODEL_DIR
    llm = AutoModelForCausalLM.from_pretrained(export).eval()
    tokenizer = AutoTokenizer.from_pretrained(export)
    text = processor([[{"role": "user", "content": "Which key is it in?"}]])
    ids = tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": "Which key is it in?"}],
                                                  tokenize=False, add_generation_prompt=True),
                    add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert ids.tolist() == text["input_ids"].tolist()
    with torch.no_grad():
        torch.testing.assert_close(llm(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


def test_generate_with_audio_returns_new_tokens(tiny_model):
    model, processor = tiny_model
    batch = processor([audio_question()], [[sine(2.0)]])
    out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, 5)
    again = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.tolist() == again.tolist()


def test_the_loss_is_the_language_models_own_loss_on_the_labelled_tokens(tiny_model):
    # the vocabulary projection runs only where a label is: the same number as the LLM's loss
    model, processor = tiny_model
    batch = batch_for(processor, seconds=(2.0, 1.0), answer="Piano and drums at 120 BPM.")
    assert (batch["labels"] == -100).sum() > (batch["labels"] != -100).sum()  # mostly prompt
    embeds = model.embed_inputs(batch["input_ids"], batch["audio_values"], batch["audio_lens"])
    with torch.no_grad():
        full = model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                    labels=batch["labels"]).loss
        assert model(**batch).loss.item() == pytest.approx(full.item(), rel=1e-5)


def test_training_steps_fit_one_example_and_leave_the_encoder_frozen(tiny_model):
    model, processor = tiny_model
    model.train()
    batch = batch_for(processor, seconds=(2.0,), answer="Piano and drums at 120 BPM.")
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in model.audio_tower.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.multi_modal_projector.linear_1.weight.grad is not None


def test_bfloat16_model_takes_float32_features(tiny_model):
    model, processor = tiny_model
    model.to(torch.bfloat16)
    batch = batch_for(processor, seconds=(1.0,))
    out = logits(model, batch)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_cached_encoder_frames_give_the_same_logits(tiny_model):
    model, processor = tiny_model
    batch = batch_for(processor)
    frames, frame_lens = model.encode_audio(batch["audio_values"], batch["audio_lens"])
    cached = {k: v for k, v in batch.items() if not k.startswith("audio_")}
    with torch.no_grad():
        out = model(**cached, audio_frames=frames, audio_frame_lens=frame_lens).logits
    torch.testing.assert_close(out, logits(model, batch), atol=0, rtol=0)


def test_summary_token_sees_the_whole_window_but_not_its_padding(tiny_tokenizer):
    from musicllm.modeling import MusicLLMForConditionalGeneration
    from musicllm.processing import MusicLLMProcessor
    from musicllm.tiny import tiny_config

    from conftest import small_text_overrides

    torch.manual_seed(0)
    config = tiny_config(tiny_tokenizer, text_overrides=small_text_overrides(), stack_factor=10, audio_summary_tokens=1)
    model = MusicLLMForConditionalGeneration(config).eval()
    processor = MusicLLMProcessor(tiny_tokenizer, config)
    frames, frame_lens = model.encode_audio(**processor.audio_windows([sine(2.0), sine(0.7, freq=220.0)]))
    with torch.no_grad():
        tokens = model.project_audio(frames, frame_lens)
        alone = model.project_audio(*model.encode_audio(**processor.audio_windows([sine(0.7, freq=220.0)])))
    assert tokens.shape[0] == processor.num_audio_tokens(sine(2.0)) + processor.num_audio_tokens(sine(0.7))
    torch.testing.assert_close(tokens[-alone.shape[0]:], alone, atol=1e-5, rtol=1e-5)  # padding excluded
    # The summary (each window's first token) changes when any frame changes, the last one included.
    changed = frames.clone()
    changed[0, int(frame_lens[0]) - 1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model.project_audio(changed, frame_lens)[0], tokens[0])
    batch = processor([audio_question()], [[sine(2.0)]])
    assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1]


def test_attribute_tokens_are_the_likeliest_class_words_token_by_token(tiny_tokenizer):
    """Each window starts with its attribute tokens: the attribute's label, then the likeliest
    class word of a single-label attribute, the `words` likeliest of a multi-label one, each as its
    own tokens' embeddings, right-padded to the attribute's longest word; the processor counts
    them, so a batch with audio runs."""
    from musicllm.modeling import MusicLLMForConditionalGeneration
    from musicllm.processing import MusicLLMProcessor
    from musicllm.tiny import tiny_config

    from conftest import small_text_overrides

    def ids(word):
        return tiny_tokenizer.encode(" " + word, add_special_tokens=False)

    pad = ids("")[-1]
    modes, instruments = ["major", "minor"], ["piano", "drum kit", "bass"]
    assert len(ids("drum kit")) > max(len(ids("piano")), len(ids("bass")), len(ids("minor")), len(ids("major")))
    longest, label = len(ids("drum kit")), ids("instruments:")
    attributes = [{"name": "mode", "classes": modes, "token_ids": [ids(w) for w in modes], "pad_id": pad,
                   "words": 1, "slots": max(len(ids(w)) for w in modes), "multi_label": False},  # no label
                  {"name": "instruments", "classes": instruments, "token_ids": [ids(w) for w in instruments],
                   "pad_id": pad, "label_ids": label, "words": 2, "slots": len(label) + 2 * longest,
                   "multi_label": True}]
    torch.manual_seed(0)
    config = tiny_config(tiny_tokenizer, text_overrides=small_text_overrides(), stack_factor=10,
                         audio_summary_tokens=1, audio_attributes=attributes)
    model = MusicLLMForConditionalGeneration(config).eval()
    processor = MusicLLMProcessor(tiny_tokenizer, config)
    projector = model.multi_modal_projector
    with torch.no_grad():  # the heads say: minor, barely; drum kit, then bass, then piano
        projector.attribute_head[-1].weight.zero_()
        projector.attribute_head[-1].bias.copy_(torch.tensor([-0.1, 0.1, 1.0, 3.0, 2.0]))
    frames, frame_lens = model.encode_audio(**processor.audio_windows([sine(2.0)]))
    with torch.no_grad():
        tokens = model.project_audio(frames, frame_lens)
    embed = model.get_input_embeddings().weight

    def padded(word, length):
        return ids(word) + [pad] * (length - len(ids(word)))

    words = padded("minor", attributes[0]["slots"]) + label + padded("drum kit", longest) + padded("bass", longest)
    assert tokens.shape[0] == processor.num_audio_tokens(sine(2.0)) == len(words) + 1 + 10  # summary, 100 frames / 10
    torch.testing.assert_close(tokens[:len(words)], embed[words])
    batch = processor([audio_question()], [[sine(2.0)]])
    assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1]
    # With a floor, a multi-label attribute names only the classes it is sure of (bass: sigmoid 0.88),
    # always its likeliest (drum kit: 0.95), in the same slots.
    for floor in (0.9, 0.99):
        projector.attributes[1]["min_probability"] = floor
        with torch.no_grad():
            tokens = model.project_audio(frames, frame_lens)
        sure = padded("minor", attributes[0]["slots"]) + label + padded("drum kit", longest) + [pad] * longest
        torch.testing.assert_close(tokens[:len(sure)], embed[sure])
    projector.attributes[1]["min_probability"] = 0.8
    with torch.no_grad():
        torch.testing.assert_close(model.project_audio(frames, frame_lens)[:len(words)], embed[words])


def test_a_heads_temperature_divides_its_logits_and_the_mood_composed_from_it_follows(tiny_tokenizer):
    """A head's `temperature` (its calibration) divides its logits, leaving its likeliest class;
    the mood composed from it changes with it: major at 0.6 and soft at 0.99 compose "calm"
    (0.59 against "sad" 0.4), and soft at 0.57, the dynamics head calibrated, "sad"."""
    import math

    from musicllm.projector import MusicLLMProjector
    from musicllm.tiny import tiny_config

    from conftest import small_text_overrides

    def attribute(name, classes, **more):
        ids = [tiny_tokenizer.encode(" " + c, add_special_tokens=False) for c in classes]
        return {"name": name, "classes": classes, "token_ids": ids, "pad_id": 0, "words": 1,
                "slots": max(map(len, ids)), "multi_label": False, **more}

    mood = attribute("mood", ["calm", "happy", "sad"], composed_of=["mode", "dynamics"], table=[0, 1, 2, 2])
    projector = MusicLLMProjector(tiny_config(tiny_tokenizer, text_overrides=small_text_overrides(), stack_factor=10,
                                              audio_attributes=[attribute("mode", ["major", "minor"]),
                                                                attribute("dynamics", ["soft", "loud"]), mood])).eval()
    with torch.no_grad():
        projector.attribute_head[-1].weight.zero_()
        projector.attribute_head[-1].bias.copy_(torch.tensor([0.6, 0.4, 0.99, 0.01]).log())
        stats = torch.zeros(1, projector.attribute_scale.shape[0])
        mode, level, composed = projector.attribute_logits(stats)
        assert composed.argmax(-1).item() == 0 and math.isclose(composed.exp()[0, 0].item(), 0.594, abs_tol=1e-3)
        projector.attributes[1]["temperature"] = 16.0
        calibrated = projector.attribute_logits(stats)
    torch.testing.assert_close(calibrated[0], mode)
    torch.testing.assert_close(calibrated[1], level / 16.0)
    assert calibrated[1].argmax(-1).item() == 0 and calibrated[2].argmax(-1).item() == 2


def test_a_composed_attribute_it_cannot_compute_is_an_error_naming_it(tiny_tokenizer):
    """A config whose composed attribute (the mood) names a part that is missing or multi-label, or
    whose table does not cover every combination of its parts' classes, is refused when the model
    is built, with the attribute named, rather than giving wrong words later."""
    from musicllm.projector import MusicLLMProjector
    from musicllm.tiny import tiny_config

    from conftest import small_text_overrides

    def attribute(name, classes, **more):
        ids = [tiny_tokenizer.encode(" " + c, add_special_tokens=False) for c in classes]
        return {"name": name, "classes": classes, "token_ids": ids, "pad_id": 0, "words": 1,
                "slots": max(map(len, ids)), "multi_label": False, **more}

    mode = attribute("mode", ["major", "minor"])
    level = attribute("dynamics", ["soft", "loud"])
    drums = attribute("instruments", ["piano", "drums"]) | {"multi_label": True}
    for parts, table, problem in [(["mode", "dynamics"], [0, 1, 0], "one class per combination"),
                                  (["mode", "tempo"], [0, 1, 0, 1], "single-label attribute"),
                                  (["mode", "instruments"], [0, 1, 0, 1], "single-label attribute")]:
        mood = attribute("mood", ["calm", "tense"], composed_of=parts, table=table)
        config = tiny_config(tiny_tokenizer, text_overrides=small_text_overrides(), stack_factor=10,
                             audio_attributes=[mode, level, drums, mood])
        with pytest.raises(ValueError, match=f"'mood'.*{problem}"):
            MusicLLMProjector(config)
    fine = attribute("mood", ["calm", "tense"], composed_of=["mode", "dynamics"], table=[0, 1, 0, 1])
    MusicLLMProjector(tiny_config(tiny_tokenizer, text_overrides=small_text_overrides(), stack_factor=10,
                                  audio_attributes=[mode, level, fine]))

"""Real backbones through the real loading code: tiny random models of the hub classes, saved
to folders and loaded with `from_pretrained`, exactly as hub ids would be."""

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM, HubertConfig, HubertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast,
    Qwen2Config, Qwen2ForCausalLM, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model, WhisperConfig,
    WhisperFeatureExtractor, WhisperModel,
)

from musicllm.builders import build_from_backbones
from musicllm.checkpoint import load_checkpoint, save_checkpoint
from musicllm.modeling import fit_attention
from musicllm.templates import CHATML_TEMPLATE

from conftest import CORPUS, audio_question, sine

LLM_SIZE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
ENCODER_SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                    conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16,
                    num_conv_pos_embedding_groups=2)


def hub_like_tokenizer(chat: bool) -> PreTrainedTokenizerFast:
    """A tokenizer without <|audio|>, like a hub LLM's; `chat` gives it ChatML like Qwen2.5."""
    specials = ["<|endoftext|>"] + (["<|im_start|>", "<|im_end|>"] if chat else [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 10, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=specials[-1], pad_token="<|endoftext|>")
    if chat:
        wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def save_llm(folder, arch: str):
    torch.manual_seed(0)
    tokenizer = hub_like_tokenizer(chat=arch == "qwen2")
    if arch == "qwen2":  # Qwen2.5 small models: tied embeddings, spare embedding rows
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer) + 16, tie_word_embeddings=True, **LLM_SIZE))
    else:  # Llama-3 style: untied, embedding rows == vocabulary
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=False, **LLM_SIZE))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_encoder(folder, kind: str):
    torch.manual_seed(0)
    if kind == "hubert":
        HubertModel(HubertConfig(**ENCODER_SIZE)).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    elif kind == "wav2vec2":
        Wav2Vec2Model(Wav2Vec2Config(**ENCODER_SIZE)).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    else:  # whisper with a 2 s chunk (100 encoder positions) instead of 30 s
        config = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                               decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37,
                               num_mel_bins=80, max_source_positions=100, vocab_size=100, pad_token_id=0,
                               bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
        WhisperModel(config).save_pretrained(folder)
        WhisperFeatureExtractor(feature_size=80, chunk_length=2).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("audio_kind, arch", [("features", "qwen2"), ("hubert", "llama"),
                                              ("wav2vec2", "qwen2"), ("whisper", "qwen2")])
def test_build_from_pretrained_folders(tmp_path, audio_kind, arch):
    text_dir = save_llm(tmp_path / "llm", arch)
    audio = "features" if audio_kind == "features" else save_encoder(tmp_path / "enc", audio_kind)
    model, processor = build_from_backbones(audio, str(text_dir), stack_factor=4)
    model.eval()

    # The LLM inside is the pretrained one, untouched (apart from a new <|audio|> row).
    reference = AutoModelForCausalLM.from_pretrained(text_dir).eval()
    ids = torch.tensor([processor.tokenizer.encode("A calm piano piece in C major")])
    with torch.no_grad():
        ours, theirs = model(input_ids=ids).logits, reference(input_ids=ids).logits
    torch.testing.assert_close(ours[..., : theirs.shape[-1]], theirs)
    if audio_kind != "features":  # every saved encoder weight arrives unchanged
        saved = load_file(f"{audio}/model.safetensors")
        ours = {k.removeprefix("backbone."): v for k, v in model.audio_tower.state_dict().items()}
        # Whisper: our backbone is the saved model's encoder, so its keys lack the "encoder." prefix.
        matched = [(k, name) for k in ours for name in (k, "encoder." + k) if name in saved]
        assert len(matched) >= 10
        assert [k for k, name in matched if not torch.equal(ours[k], saved[name])] == []
    assert not any(p.requires_grad for p in model.audio_tower.parameters())

    # Audio goes all the way through, and the checkpoint reloads to identical logits.
    batch = processor([audio_question()], [[sine(3.0)]])
    fit_attention(model, "cpu")  # the kernel load_checkpoint picks on CPU: the same sums in the same order
    with torch.no_grad():
        before = model(**batch).logits
    save_checkpoint(model, processor, tmp_path / "ckpt")
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, before, atol=0, rtol=0)
    assert model.generate(**batch, max_new_tokens=3, do_sample=False).shape == (1, 3)


def test_weighted_layers_are_the_only_trainable_encoder_part(tmp_path):
    text_dir = save_llm(tmp_path / "llm", "qwen2")
    audio = save_encoder(tmp_path / "enc", "hubert")
    model, processor = build_from_backbones(audio, str(text_dir), audio_layer="weighted", stack_factor=4)
    trainable = [n for n, p in model.audio_tower.named_parameters() if p.requires_grad]
    assert trainable == ["layer_weights"]
    batch = processor([audio_question("Piano.")], [[sine(1.0)]], with_labels=True, padding_side="right")
    model(**batch).loss.backward()
    assert model.audio_tower.layer_weights.grad is not None


def test_pickle_checkpoints_are_refused(tmp_path):
    """Weights load from safetensors only: a folder holding only a pickled .bin is not loaded."""
    text_dir = save_llm(tmp_path / "llm", "qwen2")
    model = AutoModelForCausalLM.from_pretrained(text_dir)
    (text_dir / "model.safetensors").unlink()
    torch.save(model.state_dict(), text_dir / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors"):
        build_from_backbones("features", str(text_dir))

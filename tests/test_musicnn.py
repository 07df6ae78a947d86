"""The musicnn port: golden taggrams from the original TensorFlow model, the checkpoint reader,
the log-mel front end, patching of whole clips, and tags a listener would agree with.

Tests marked `requires_musicnn` need the weights: `pip install --no-deps musicnn==0.1.0`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import struct

import numpy as np
import pytest
import torch

from musicllm import musicnn
from musicllm.musicnn import (
    MSD_TAGS,
    MTT_TAGS,
    PATCH_SAMPLES,
    Musicnn,
    load_musicnn,
    log_mel,
    read_tf_checkpoint,
    tag,
)

SR = 16000
requires_musicnn = pytest.mark.skipif(
    importlib.util.find_spec("musicnn") is None, reason="needs the weights: pip install --no-deps musicnn==0.1.0"
)


# ---------------------------------------------------------------------------------------------
# Deterministic test signals (the golden values below were computed on exactly these)


def notes(seconds: float, seed: int = 0) -> np.ndarray:
    """Piano-like: a decaying harmonic note every 0.5 s on a C-major scale, two voices."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    out = np.zeros(n)
    t = np.arange(int(1.5 * SR)) / SR
    for start in np.arange(0.0, seconds, 0.5):
        for octave in (0, 1):
            f0 = 130.81 * 2.0 ** (octave + [0, 2, 4, 5, 7, 9, 11][rng.integers(0, 7)] / 12)
            note = sum(np.sin(2 * np.pi * k * f0 * t) / k**1.5 for k in range(1, 7)) * np.exp(-3.0 * t)
            i = int(start * SR)
            out[i : i + len(t)] += note[: n - i]
    return (0.25 * out / np.abs(out).max()).astype(np.float32)


def drums(seconds: float, seed: int = 0, bpm: float = 120.0) -> np.ndarray:
    """Drum-like: a kick (decaying 60 Hz thump) on each beat, noise-burst snares and hats between."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    out = np.zeros(n)
    beat = 60.0 / bpm
    t = np.arange(int(0.2 * SR)) / SR
    kick = np.sin(2 * np.pi * 60 * t) * np.exp(-25 * t)
    for k, start in enumerate(np.arange(0.0, seconds, beat / 2)):
        i = int(start * SR)
        if k % 2 == 0:
            hit = kick
        else:
            hit = rng.standard_normal(len(t)) * np.exp(-(30 if k % 4 == 3 else 60) * t)
        out[i : i + len(t)] += hit[: n - i]
    return (0.25 * out / np.abs(out).max()).astype(np.float32)


def mix(seconds: float, seed: int = 0) -> np.ndarray:
    """Harmonic notes + seeded noise + a click track: the golden-value signal."""
    rng = np.random.default_rng(seed + 1)
    n = int(seconds * SR)
    clicks = np.zeros(n)
    clicks[:: SR // 4] = 1.0
    y = notes(seconds, seed) + 0.3 * drums(seconds, seed) + 0.01 * rng.standard_normal(n) + 0.1 * clicks
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


@pytest.fixture(scope="module")
def mtt():
    return load_musicnn("MTT_musicnn")


@pytest.fixture(scope="module")
def msd():
    return load_musicnn("MSD_musicnn")


# ---------------------------------------------------------------------------------------------
# Golden values from the ORIGINAL model. Produced once, outside the project, in a scratch venv
# with tensorflow-cpu 2.21 + tf-keras (TF_USE_LEGACY_KERAS=1), librosa 0.11 and
# `pip install --no-deps musicnn==0.1.0`: musicnn.models.define_model built the graph under
# tf.compat.v1 (eager off), tf.compat.v1.train.Saver restored the package's checkpoint (without
# the extractor's bare `except`, which would hide a failed restore), and it was fed the two
# non-overlapping 187-frame patches of log10(10000 * librosa.feature.melspectrogram(mix(6.5),
# sr=16000, n_fft=512, hop_length=256, n_mels=96) + 1) in float32. musicnn's own `extractor`
# (float16-rounded mel, numpy<1.17 arithmetic) gives the same values within 4e-5.
# {tag: (patch 0, patch 1)}

GOLDEN_MTT = {
    "piano": (0.379123, 0.345129),
    "classical": (0.172643, 0.332170),
    "harpsichord": (0.112822, 0.345584),
    "guitar": (0.180726, 0.204791),
    "slow": (0.204071, 0.159541),
    "drums": (0.026888, 0.013622),
}
GOLDEN_MSD = {
    "jazz": (0.846589, 0.793690),
    "instrumental": (0.100013, 0.116406),
    "electronic": (0.063712, 0.080449),
    "ambient": (0.062785, 0.071883),
    "rock": (0.011244, 0.012594),
}
# penultimate[1, :5] (patch 1, the first 5 of 200 units; musicnn's extractor returns patch 0's
# penultimate for every patch, so these came from the graph alone)
GOLDEN_PENULTIMATE = {
    "mtt": (-0.07995, -0.03288, 0.53119, 0.02200, -0.07870),
    "msd": (-0.17718, 0.91529, -0.28483, -0.27512, 0.74647),
}


@requires_musicnn
@pytest.mark.parametrize("name, tags, golden", [("mtt", MTT_TAGS, GOLDEN_MTT), ("msd", MSD_TAGS, GOLDEN_MSD)])
def test_taggram_matches_original_tensorflow(name, tags, golden, request):
    model = request.getfixturevalue(name)
    taggram, embeddings = tag(model, torch.from_numpy(mix(6.5)))
    assert taggram.shape == (2, 50) and embeddings.shape == (2, 200)
    got = {t: tuple(taggram[:, tags.index(t)].tolist()) for t in golden}
    np.testing.assert_allclose(np.array(list(got.values())), np.array(list(golden.values())), atol=1e-4)
    np.testing.assert_allclose(embeddings[1, :5].numpy(), GOLDEN_PENULTIMATE[name], atol=1e-4)


# ---------------------------------------------------------------------------------------------
# The checkpoint reader


@requires_musicnn
def test_reads_musicnn_checkpoint_names_and_shapes():
    variables = read_tf_checkpoint(musicnn._checkpoint_prefix("MTT_musicnn"))
    assert len(variables) == 150  # 64 of the model (42 trained), 2 Adam slots per trained one, 2 Adam powers
    assert variables["conv2d/kernel"].shape == (7, 38, 1, 204)  # timbral, 0.4 * 96 mel bins
    assert variables["conv2d_1/kernel"].shape == (7, 67, 1, 204)  # timbral, 0.7 * 96 mel bins
    assert variables["conv2d_2/kernel"].shape == (128, 1, 1, 51)  # temporal, 128 frames
    assert variables["conv2d_5/kernel"].shape == (7, 561, 1, 64)  # mid-end
    assert variables["dense/kernel"].shape == (1506, 200)
    assert variables["dense_1/kernel"].shape == (200, 50)
    assert variables["batch_normalization_9/moving_variance"].shape == (1506,)
    assert variables["conv2d/kernel/Adam"].shape == (7, 38, 1, 204)
    assert all(v.dtype == np.float32 for v in variables.values())
    assert np.all(variables["batch_normalization_10/moving_variance"] > 0)


@pytest.fixture()
def checkpoint_copy(tmp_path):
    """A writable copy of the MTT checkpoint: (prefix, index path, data path)."""
    if importlib.util.find_spec("musicnn") is None:
        pytest.skip("needs the weights: pip install --no-deps musicnn==0.1.0")
    source = musicnn._checkpoint_prefix("MTT_musicnn")
    prefix = str(tmp_path / "ckpt")
    shutil.copy(source + ".index", prefix + ".index")
    shutil.copy(source + ".data-00000-of-00001", prefix + ".data-00000-of-00001")
    return prefix, prefix + ".index", prefix + ".data-00000-of-00001"


def test_truncated_index_names_the_file(checkpoint_copy):
    prefix, index, _ = checkpoint_copy
    with open(index, "rb") as f:
        content = f.read()
    with open(index, "wb") as f:
        f.write(content[: len(content) // 2])
    with pytest.raises(ValueError, match=re.escape(index) + ": bad magic number.*truncated"):
        read_tf_checkpoint(prefix)


def test_corrupt_index_names_the_file(checkpoint_copy):
    prefix, index, _ = checkpoint_copy
    with open(index, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match=re.escape(index) + ": truncated or corrupt.*checksum"):
        read_tf_checkpoint(prefix)


def test_truncated_data_names_the_file(checkpoint_copy):
    prefix, _, data = checkpoint_copy
    with open(data, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ValueError, match=re.escape(data) + ": truncated"):
        read_tf_checkpoint(prefix)


def _varint(value: int) -> bytes:
    out = b""
    while value >= 0x80:
        out, value = out + bytes([value & 0x7F | 0x80]), value >> 7
    return out + bytes([value])


def write_checkpoint(prefix: str, tensors: dict[str, tuple[int, tuple, bytes]]) -> None:
    """A minimal TensorFlow tensor bundle: one data block (prefix-compressed keys), an index
    block, an empty metaindex and the footer. tensors: {name: (TF dtype enum, shape, raw bytes)}."""

    def block(entries):  # [(key, value)] -> block with one restart point, plus its trailer
        body, previous = b"", b""
        for key, value in entries:
            shared = len(os.path.commonprefix([previous, key]))
            body += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
            previous = key
        body += struct.pack("<II", 0, 1)
        return body + b"\0" + struct.pack("<I", musicnn._masked_crc32c(body + b"\0"))

    data, records = b"", [(b"", b"\x08\x01")]  # header: num_shards = 1
    for name, (dtype, shape, raw) in sorted(tensors.items()):
        dims = b"".join(b"\x12" + _varint(len(d)) + d for d in (b"\x08" + _varint(n) for n in shape))
        record = b"\x08" + _varint(dtype) + b"\x12" + _varint(len(dims)) + dims
        record += b"\x20" + _varint(len(data)) + b"\x28" + _varint(len(raw))
        records.append((name.encode(), record))
        data += raw
    data_block = block(records)
    meta_block = block([])
    handle = lambda offset, blk: _varint(offset) + _varint(len(blk) - 5)  # noqa: E731
    index_block = block([(records[-1][0], handle(0, data_block))])
    meta_at, index_at = len(data_block), len(data_block) + len(meta_block)
    handles = handle(meta_at, meta_block) + handle(index_at, index_block)
    footer = handles.ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    with open(prefix + ".index", "wb") as f:
        f.write(data_block + meta_block + index_block + footer)
    with open(prefix + ".data-00000-of-00001", "wb") as f:
        f.write(data)


def test_reader_round_trips_a_hand_built_checkpoint(tmp_path):
    prefix = str(tmp_path / "model")
    kernel = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    half = np.array([1.5, -2.25], dtype=np.float16)
    step = np.array(123456789012, dtype=np.int64)
    write_checkpoint(
        prefix,
        {
            "layer/kernel": (1, kernel.shape, kernel.tobytes()),
            "layer/kernel_half": (19, half.shape, half.tobytes()),  # shares the prefix "layer/kernel"
            "global_step": (9, (), step.tobytes()),
        },
    )
    variables = read_tf_checkpoint(prefix)
    assert sorted(variables) == ["global_step", "layer/kernel", "layer/kernel_half"]
    np.testing.assert_array_equal(variables["layer/kernel"], kernel)
    np.testing.assert_array_equal(variables["layer/kernel_half"], half)
    assert variables["global_step"].shape == () and variables["global_step"] == step
    variables["layer/kernel"][0, 0, 0] = 1.0  # writable copies, not views of the file


@pytest.mark.parametrize("dtype", [7, 14], ids=["string", "bfloat16"])
def test_unsupported_dtype_names_file_and_variable(tmp_path, dtype):
    prefix = str(tmp_path / "model")
    write_checkpoint(prefix, {"ok": (1, (1,), b"\0" * 4), "vocab": (dtype, (2,), b"\0" * 4)})
    message = f"{prefix}.index: variable 'vocab' has unsupported TensorFlow dtype {dtype}"
    with pytest.raises(ValueError, match=re.escape(message)):
        read_tf_checkpoint(prefix)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.index").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ValueError, match="x.index: bad magic number"):
        read_tf_checkpoint(tmp_path / "x")


# ---------------------------------------------------------------------------------------------
# Preprocessing and loading


def test_log_mel_equals_librosa():
    librosa = pytest.importorskip("librosa")
    audio = mix(1.3, seed=5)
    mel = librosa.feature.melspectrogram(y=audio, sr=SR, n_fft=512, hop_length=256, n_mels=96).T
    expected = np.log10(10000 * mel + 1)
    got = log_mel(torch.from_numpy(audio)[None])[0].numpy()
    assert got.shape == expected.shape == (1 + len(audio) // 256, 96)
    np.testing.assert_allclose(got, expected, atol=2e-5)  # float32 FFTs; values reach ~5


@requires_musicnn
def test_every_variable_is_mapped_once(monkeypatch):
    model = load_musicnn("MTT_musicnn")
    names = musicnn._tf_variable_names()
    assert len(set(names.values())) == len(names) == 64  # 8 convs, 11 batch norms, 2 dense layers
    # every parameter and batch-norm statistic comes from the checkpoint (the step counters do not)
    state = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(names) == state
    real = musicnn.read_tf_checkpoint
    monkeypatch.setattr(musicnn, "read_tf_checkpoint", lambda prefix: {**real(prefix), "extra/kernel": np.zeros(1)})
    with pytest.raises(ValueError, match=r"not used \['extra/kernel'\]"):
        load_musicnn("MTT_musicnn")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps musicnn==0\.1\.0"):
        load_musicnn("MTT_musicnn")
    with pytest.raises(ValueError, match="unknown musicnn model 'MTT_vgg'"):
        load_musicnn("MTT_vgg")


@requires_musicnn
def test_model_is_frozen_and_saves_as_safetensors(mtt, tmp_path):
    from safetensors.torch import load_file, save_file

    assert not any(p.requires_grad for p in mtt.parameters())
    mtt.train()
    assert not mtt.training and not any(m.training for m in mtt.modules())
    save_file(mtt.state_dict(), tmp_path / "musicnn.safetensors")
    reloaded = Musicnn()
    reloaded.load_state_dict(load_file(tmp_path / "musicnn.safetensors"))
    patches = torch.from_numpy(np.random.default_rng(0).uniform(0, 4, (2, 187, 96)).astype(np.float32))
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(patches)["taggram"], mtt(patches)["taggram"], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Whole clips


@requires_musicnn
def test_piano_and_drums_get_the_tags_a_listener_would_give(mtt):
    piano_tags, _ = tag(mtt, torch.from_numpy(notes(4.0, seed=1)))
    drum_tags, _ = tag(mtt, torch.from_numpy(drums(4.0, seed=2)))
    piano, drum = dict(zip(MTT_TAGS, piano_tags[0].tolist())), dict(zip(MTT_TAGS, drum_tags[0].tolist()))
    assert MTT_TAGS[int(piano_tags[0].argmax())] == "piano"  # ~0.79
    assert piano["piano"] > 10 * piano["drums"] and piano["classical"] > piano["techno"]
    top2 = {MTT_TAGS[i] for i in drum_tags[0].topk(2).indices.tolist()}
    assert top2 == {"beat", "drums"}  # ~0.2 each
    assert drum["drums"] > 10 * drum["piano"]


@requires_musicnn
def test_patches_drop_the_remainder_and_batches_agree(mtt):
    audio = torch.from_numpy(mix(7.0))  # 438 frames: 2 whole patches, the last 64 frames dropped
    taggram, embeddings = tag(mtt, audio)
    assert taggram.shape == (2, 50) and embeddings.shape == (2, 200)
    used, _ = tag(mtt, audio[: 2 * 187 * 256])  # just the samples the 2 patches' frames see
    torch.testing.assert_close(used, taggram, atol=1e-6, rtol=0)

    batched, pooled = tag(mtt, torch.stack([audio, 0.5 * audio]), embedding="max_pool")
    assert batched.shape == (2, 2, 50) and pooled.shape == (2, 2, 753)
    torch.testing.assert_close(batched[0], taggram, atol=1e-6, rtol=0)

    overlapping, _ = tag(mtt, audio, hop_patches=93)  # patches start at frames 0, 93 and 186
    assert overlapping.shape == (3, 50)
    with torch.inference_mode():
        second = mtt(log_mel(audio[None])[:, 93 : 93 + 187])["taggram"]
    torch.testing.assert_close(overlapping[1:2], second, atol=1e-6, rtol=0)


@requires_musicnn
def test_short_clips_are_looped_to_one_patch(mtt):
    short = notes(1.2, seed=3)
    taggram, embeddings = tag(mtt, torch.from_numpy(short))
    looped = np.tile(short, 3)[:PATCH_SAMPLES]
    expected, _ = tag(mtt, torch.from_numpy(looped))
    assert taggram.shape == (1, 50) and embeddings.shape == (1, 200)
    torch.testing.assert_close(taggram, expected, atol=0, rtol=0)
    with pytest.raises(ValueError, match="non-empty audio"):
        tag(mtt, torch.zeros(0))
    with pytest.raises(ValueError, match="hop_patches"):
        tag(mtt, torch.from_numpy(short), hop_patches=0)

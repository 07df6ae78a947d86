"""musicnn, the music tagger of Pons & Serra (ISMIR 2019), ported to PyTorch.

musicnn is a musically motivated CNN over 3 s log-mel patches: a front-end of timbral (tall,
frequency-wide) and temporal (long, one-bin) filters, a mid-end of dense 1-D convolutions with
residual connections, and a back-end that pools over time and tags with two dense layers.

    log_mel(audio (B, S) at 16 kHz)                    -> mel (B, frames, 96)
    Musicnn()(mel_patches (B, 187, 96))                -> {"taggram" (B, 50), "penultimate" (B, 200),
                                                           "max_pool" / "mean_pool" (B, 753), ...}
    tag(model, audio (S,) or (B, S), hop_patches=187)  -> (taggram (.., P, 50), embeddings (.., P, D))

Provenance: the weights are the TensorFlow-1 checkpoints shipped inside the PyPI package
`musicnn` 0.1.0 (ISC licence, (c) Music Technology Group, Universitat Pompeu Fabra 2019), trained
on MagnaTagATune (`MTT_musicnn`) and the Million Song Dataset (`MSD_musicnn`). Install its files
only, never its dependencies (TensorFlow 1 and numpy<1.17):

    pip install --no-deps musicnn==0.1.0

TensorFlow is never imported: `read_tf_checkpoint` parses the checkpoint's `.index` (a LevelDB
table of protobuf records) and `.data` files by hand, bit-exact with TensorFlow's own reader.
Measured against the original TensorFlow graph (tests/test_musicnn.py says how): on the same
log-mel input the taggram agrees within 3e-6, and end to end within 4e-5 of musicnn's extractor
as it ran under its pinned numpy (the gap is its float16 rounding of the mel, see `log_mel`).
`tag` runs 60-90x realtime on one CPU core (measured on a shared 2-core machine; a second
thread helps only when the other core is idle).

Differences from musicnn's `extractor`, all deliberate: the mel is float32 throughout (under
numpy 2 the extractor's float16 arithmetic overflows to inf on ordinary music and its taggram is
off by up to 0.7); clips shorter than 3 s are looped instead of crashing; and every patch gets its
own `penultimate` (the extractor repeats patch 0's `penultimate` and `cnn*` for later patches).

This module knows nothing about the LLM or the projector: it turns 16 kHz audio into tags and
per-patch embeddings.
"""

from __future__ import annotations

import importlib.util
import os
import struct
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
PATCH_SAMPLES = (PATCH_FRAMES - 1) * HOP  # the fewest samples whose centred STFT has 187 frames

# From musicnn/configuration.py, in output order.
MTT_TAGS = [
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
]  # fmt: skip
MSD_TAGS = [
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul",
    "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies",
    "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop",
    "70s", "party", "country", "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
    "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
]  # fmt: skip
MODELS = {"MTT_musicnn": MTT_TAGS, "MSD_musicnn": MSD_TAGS}

# ---------------------------------------------------------------------------------------------
# TensorFlow checkpoints without TensorFlow. The `.index` file is a LevelDB table (data blocks of
# prefix-compressed key/value entries, an index block, a 48-byte footer) whose keys are variable
# names and whose values are `BundleEntryProto`s saying where each tensor lies in `.data-*`.

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48
_BLOCK_TRAILER_BYTES = 5  # compression type (1 byte) + masked crc32c (4 bytes)
_TF_DTYPES = {  # tensorflow/core/framework/types.proto
    1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
    9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64,
}  # fmt: skip


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A protobuf / LevelDB base-128 varint at `pos` -> (value, position after it)."""
    value = shift = 0
    while True:
        byte = buf[pos]  # IndexError past the end: callers turn it into a ValueError
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _proto_fields(buf: bytes):
    """Yields (field number, value) of a serialized protobuf message: ints for varints and fixed
    widths, bytes for length-delimited fields (sub-messages, packed arrays, strings)."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(buf, pos)
        elif wire_type == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            value, pos = int.from_bytes(buf[pos : pos + width], "little"), pos + width
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        yield field, value


@lru_cache(maxsize=1)
def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


def _masked_crc32c(data: bytes) -> int:
    """LevelDB's block checksum: CRC-32C, rotated and offset ("masked"). Pure Python is fine
    for the index (a few KB); the megabytes of tensor data are checked by size only."""
    table, crc = _crc32c_table(), 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _table_block(table: bytes, handle: bytes) -> bytes:
    """The contents of the block a `BlockHandle` (offset, size varints) points at, checked."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    end = offset + size + _BLOCK_TRAILER_BYTES
    if end > len(table):
        raise ValueError(f"a block ends at byte {end}, past the end of the file ({len(table)} bytes)")
    block, compression = table[offset : offset + size], table[offset + size]
    (stored_crc,) = struct.unpack_from("<I", table, offset + size + 1)
    if _masked_crc32c(table[offset : offset + size + 1]) != stored_crc:
        raise ValueError(f"checksum mismatch in the block at byte {offset}")
    if compression != 0:
        # TensorFlow writes bundles with kNoCompression; snappy (1) would come from another writer
        raise ValueError(f"block compression {compression} is not supported (only uncompressed blocks)")
    return block


def _block_entries(block: bytes):
    """Yields (key, value) of a LevelDB block: each key shares a prefix with the one before."""
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end, pos, key = len(block) - 4 - 4 * num_restarts, 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _bundle_entry(record: bytes) -> dict:
    """A `BundleEntryProto`: dtype 1, shape 2 (TensorShapeProto: dims 2, each size 1), shard_id 3,
    offset 4, size 5, crc32c 6, slices 7 (partitioned variables, which musicnn does not use)."""
    entry = {"dtype": 0, "shape": [], "shard_id": 0, "offset": 0, "size": 0}  # proto3 defaults
    scalars = {1: "dtype", 3: "shard_id", 4: "offset", 5: "size"}
    for field, value in _proto_fields(record):
        if field == 2:
            entry["shape"] = [dict(_proto_fields(dim)).get(1, 0) for f, dim in _proto_fields(value) if f == 2]
        elif field == 7:
            raise ValueError("partitioned (sliced) variables are not supported")
        elif field in scalars:
            entry[scalars[field]] = value
    return entry


def _index_entries(prefix: str) -> tuple[dict, dict[str, dict]]:
    """`.index` -> (header fields, {variable name: entry}); every failure names the file."""
    path = prefix + ".index"
    with open(path, "rb") as f:
        table = f.read()
    if len(table) < _FOOTER_BYTES or int.from_bytes(table[-8:], "little") != _TABLE_MAGIC:
        raise ValueError(f"{path}: bad magic number (no table footer): truncated, or not a TensorFlow checkpoint")
    footer = table[-_FOOTER_BYTES:]
    header, entries = {}, {}
    try:
        _, pos = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle
        for _, handle in _block_entries(_table_block(table, footer[pos:])):
            for key, record in _block_entries(_table_block(table, handle)):
                if key == b"":  # the BundleHeaderProto: num_shards 1, endianness 2
                    header = dict(_proto_fields(record))
                else:
                    entries[key.decode()] = _bundle_entry(record)
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: truncated or corrupt checkpoint index: {error}") from error
    if header.get(2, 0) != 0:
        raise ValueError(f"{path}: big-endian checkpoints are not supported")
    return header, entries


def read_tf_checkpoint(prefix: str | os.PathLike) -> dict[str, np.ndarray]:
    """All variables of a TensorFlow (1 or 2) checkpoint, by name, as numpy arrays.

    `prefix` is the path without `.index` (musicnn's is a folder plus "/", so its files are
    named `.index` and `.data-00000-of-00001`). Raises ValueError naming the file for a bad magic
    number, a truncated or corrupt file and a dtype numpy cannot hold (strings, bfloat16).
    """
    prefix = os.fspath(prefix)
    header, entries = _index_entries(prefix)
    num_shards = header.get(1, 1)
    shards: dict[int, bytes] = {}
    variables = {}
    for name, entry in sorted(entries.items()):
        data_path = f"{prefix}.data-{entry['shard_id']:05d}-of-{num_shards:05d}"
        if entry["dtype"] not in _TF_DTYPES:
            raise ValueError(f"{prefix}.index: variable {name!r} has unsupported TensorFlow dtype {entry['dtype']}")
        dtype = np.dtype(_TF_DTYPES[entry["dtype"]]).newbyteorder("<")
        if entry["size"] != dtype.itemsize * int(np.prod(entry["shape"])):
            raise ValueError(f"{prefix}.index: variable {name!r} has {entry['size']} bytes for shape {entry['shape']}")
        if entry["shard_id"] not in shards:
            with open(data_path, "rb") as f:
                shards[entry["shard_id"]] = f.read()
        data, end = shards[entry["shard_id"]], entry["offset"] + entry["size"]
        if end > len(data):
            raise ValueError(f"{data_path}: truncated (variable {name!r} ends at byte {end}, the file has {len(data)})")
        array = np.frombuffer(data, dtype=dtype, count=entry["size"] // dtype.itemsize, offset=entry["offset"])
        variables[name] = array.reshape(entry["shape"]).astype(dtype.newbyteorder("="))  # a writable copy
    return variables


# ---------------------------------------------------------------------------------------------
# Preprocessing: librosa.feature.melspectrogram's defaults, then musicnn's log compression.


@lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    """(96, 257) Slaney mel filters, as librosa.filters.mel(sr=16000, n_fft=512, n_mels=96)."""
    from transformers.audio_utils import mel_filter_bank

    filters = mel_filter_bank(
        num_frequency_bins=N_FFT // 2 + 1,
        num_mel_filters=N_MELS,
        min_frequency=0.0,
        max_frequency=SAMPLE_RATE / 2,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return np.ascontiguousarray(filters.T, dtype=np.float32)  # numpy: no inference tensor in the cache


def log_mel(audio: torch.Tensor) -> torch.Tensor:
    """(B, S) float audio at 16 kHz -> (B, 1 + S // 256, 96) musicnn input features.

    Equals `log10(10000 * librosa.feature.melspectrogram(y, sr=16000, n_fft=512, hop_length=256,
    n_mels=96) + 1)`: periodic Hann, centred frames with zero padding (librosa 0.11's pad_mode),
    power spectrum, Slaney mels. musicnn also rounds the mel power to float16 (its training data
    was stored so) and, under numpy<1.17, took the log in float32; under numpy 2 the product stays
    float16 and overflows above a mel power of 6.55. Here it is float32 throughout: skipping the
    rounding moves the taggram by at most 4e-5.
    """
    audio = audio.float()
    window = torch.hann_window(N_FFT, periodic=True, device=audio.device)
    spec = torch.stft(audio, N_FFT, HOP, window=window, center=True, pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()  # B, 257, T
    mel = torch.matmul(torch.from_numpy(_mel_filters()).to(audio.device), power)  # 96, 257 @ B, 257, T -> B, 96, T
    return torch.log10(10000.0 * mel + 1.0).transpose(1, 2)  # B, T, 96


# ---------------------------------------------------------------------------------------------
# The network. TensorFlow's layers run conv -> ReLU -> batch norm (in that order), with the
# batch-norm epsilon of tf.layers (1e-3); TensorFlow's 'same' padding puts the odd pad at the end.


class _FrontendBlock(nn.Module):
    """A (`frames` x `bins`) filter bank over the mel patch -> ReLU -> batch norm -> max over
    frequency. Timbral blocks span 7 frames and 38 or 67 bins, temporal ones 1 bin and 32-128
    frames; both pad time 'same' (musicnn pads the timbral ones by hand, alike) and frequency not.

    It runs as one matmul per frequency offset keeping only the running min and max, instead of
    conv2d and pooling: 2-4x faster on a CPU, and the (B, C, T, F) map is never held. The result
    is the same because bias, ReLU and batch norm are monotone per channel: their max over
    frequency lands on the conv's max where the norm's scale is positive, on its min elsewhere.
    """

    def __init__(self, frames: int, bins: int, filters: int):
        super().__init__()
        self.conv = nn.Conv2d(1, filters, (frames, bins))
        self.norm = nn.BatchNorm1d(filters, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, bins = self.conv.kernel_size
        batch, time, mels = x.shape
        x = F.pad(x, (0, 0, (frames - 1) // 2, frames // 2))  # B, T, 96 -> B, T + frames - 1, 96
        windows = x.unfold(1, frames, 1).transpose(2, 3)  # B, T, frames, 96 (a view)
        weight = self.conv.weight.flatten(1).T  # frames * bins, C
        y_min = y_max = None
        for offset in range(mels - bins + 1):
            y = windows[..., offset : offset + bins].reshape(-1, frames * bins) @ weight  # B * T, C
            y_min, y_max = (y, y) if y_max is None else (torch.minimum(y_min, y), torch.maximum(y_max, y))
        extreme = torch.where(self.norm.weight >= 0, y_max, y_min) + self.conv.bias  # B * T, C
        return self.norm(F.relu(extreme).view(batch, time, -1).transpose(1, 2))  # B, C, T


class _MidendBlock(nn.Module):
    """A 7-frame 1-D convolution over all channels (TensorFlow wrote it as a 2-D one)."""

    def __init__(self, in_channels: int, filters: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, 7, padding=3)
        self.norm = nn.BatchNorm1d(filters, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.relu(self.conv(x)))  # B, C_in, T -> B, C, T


class Musicnn(nn.Module):
    """musicnn ("7774timbraltemporal" front-end, 3 dense mid-end layers, global-pool back-end).

    forward(mel_patches (B, T, 96)) -> dict of
        taggram (B, n_tags)      sigmoid tag probabilities
        logits (B, n_tags)
        penultimate (B, 200)     the back-end's hidden layer (after its batch norm)
        max_pool, mean_pool (B, 753)  the mid-end features pooled over time
        timbral (B, T, 408), temporal (B, T, 153), cnn1 / cnn2 / cnn3 (B, T, 64)  frame features

    The models were trained on T = 187 (3 s); other lengths run but are outside training.
    Frozen: no gradients, and always in eval mode (batch norm keeps its moving statistics).
    """

    def __init__(
        self, n_tags: int = 50, frontend_scale: float = 1.6, midend_filters: int = 64, backend_units: int = 200
    ):
        super().__init__()
        timbral, temporal = int(frontend_scale * 128), int(frontend_scale * 32)
        self.input_norm = nn.BatchNorm2d(1, eps=1e-3)
        self.timbral = nn.ModuleList([_FrontendBlock(7, int(h * N_MELS), timbral) for h in (0.4, 0.7)])
        self.temporal = nn.ModuleList([_FrontendBlock(n, 1, temporal) for n in (128, 64, 32)])
        frontend_channels = 2 * timbral + 3 * temporal  # 561
        self.midend = nn.ModuleList(
            [_MidendBlock(frontend_channels, midend_filters)]
            + [_MidendBlock(midend_filters, midend_filters) for _ in range(2)]
        )
        pooled = 2 * (frontend_channels + 3 * midend_filters)  # max and mean of 753 channels
        self.pool_norm = nn.BatchNorm1d(pooled, eps=1e-3)
        self.dense = nn.Linear(pooled, backend_units)
        self.dense_norm = nn.BatchNorm1d(backend_units, eps=1e-3)
        self.classifier = nn.Linear(backend_units, n_tags)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Musicnn:
        return super().train(False)  # frozen: batch norm must never update its statistics

    def forward(self, mel_patches: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.input_norm(mel_patches.unsqueeze(1)).squeeze(1)  # B, T, 96 (one normalised channel)
        timbral = [block(x) for block in self.timbral]  # 2 x (B, 204, T)
        temporal = [block(x) for block in self.temporal]  # 3 x (B, 51, T)
        frontend = torch.cat(timbral + temporal, dim=1)  # B, 561, T

        cnn1 = self.midend[0](frontend)  # B, 64, T
        cnn2 = self.midend[1](cnn1) + cnn1  # residual connections from here on
        cnn3 = self.midend[2](cnn2) + cnn2
        midend = torch.cat([frontend, cnn1, cnn2, cnn3], dim=1)  # B, 753, T

        max_pool, mean_pool = midend.amax(dim=2), midend.mean(dim=2)  # B, 753 each
        # TensorFlow flattened (B, 753, [max, mean]), so the dense layer sees them interleaved
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # B, 1506
        penultimate = self.dense_norm(F.relu(self.dense(self.pool_norm(pooled))))  # B, 200
        logits = self.classifier(penultimate)  # B, n_tags
        return {
            "taggram": torch.sigmoid(logits),
            "logits": logits,
            "penultimate": penultimate,
            "max_pool": max_pool,
            "mean_pool": mean_pool,
            "timbral": torch.cat(timbral, dim=1).transpose(1, 2),
            "temporal": torch.cat(temporal, dim=1).transpose(1, 2),
            "cnn1": cnn1.transpose(1, 2),
            "cnn2": cnn2.transpose(1, 2),
            "cnn3": cnn3.transpose(1, 2),
        }


# ---------------------------------------------------------------------------------------------
# Loading: every TensorFlow variable goes to exactly one torch tensor.


def _is_optimizer_state(name: str) -> bool:
    """Adam's moments and step powers, saved next to the weights; inference has no use for them."""
    return name.endswith(("/Adam", "/Adam_1")) or name in ("beta1_power", "beta2_power", "global_step")


_NORM_NAMES = [
    ("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance"),
]  # fmt: skip


def _tf_variable_names() -> dict[str, str]:
    """{torch name: TensorFlow name}. tf.layers named its layers by creation order (conv2d,
    conv2d_1, ...), and musicnn created them front-end, mid-end, back-end, as listed here."""
    convs = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2", "midend.0", "midend.1", "midend.2"]
    norms = ["input_norm"] + [f"{module}.norm" for module in convs] + ["pool_norm", "dense_norm"]
    numbered = lambda prefix, i: prefix + (f"_{i}" if i else "")  # noqa: E731
    names = {}
    for i, module in enumerate(convs):
        names[f"{module}.conv.weight"] = numbered("conv2d", i) + "/kernel"
        names[f"{module}.conv.bias"] = numbered("conv2d", i) + "/bias"
    for i, module in enumerate(norms):
        for torch_name, tf_name in _NORM_NAMES:
            names[f"{module}.{torch_name}"] = numbered("batch_normalization", i) + "/" + tf_name
    for i, module in enumerate(["dense", "classifier"]):
        names[f"{module}.weight"] = numbered("dense", i) + "/kernel"
        names[f"{module}.bias"] = numbered("dense", i) + "/bias"
    return names


def _to_torch_layout(array: np.ndarray, target: torch.Tensor) -> torch.Tensor:
    """TensorFlow stores conv kernels (kh, kw, in, out) and dense kernels (in, out)."""
    tensor = torch.from_numpy(array)
    if target.dim() == 4:  # Conv2d (out, in, kh, kw)
        tensor = tensor.permute(3, 2, 0, 1)
    elif target.dim() == 3:  # Conv1d (out, in, k): TF's (7, in, 1, out) 2-D kernel
        tensor = tensor.squeeze(2).permute(2, 1, 0)
    elif target.dim() == 2:  # Linear (out, in)
        tensor = tensor.T
    return tensor


def _checkpoint_prefix(name: str) -> str:
    if name not in MODELS:
        raise ValueError(f"unknown musicnn model {name!r}; choose one of {sorted(MODELS)}")
    spec = importlib.util.find_spec("musicnn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the musicnn weights come from the `musicnn` package; install its files only "
            "(its TensorFlow 1 / numpy<1.17 requirements are not needed): pip install --no-deps musicnn==0.1.0"
        )
    # musicnn saved with the prefix "<folder>/", so the files are "<folder>/.index" etc.
    return os.path.join(list(spec.submodule_search_locations)[0], name) + os.sep


def load_musicnn(name: str = "MTT_musicnn") -> Musicnn:
    """The pretrained `MTT_musicnn` (MagnaTagATune tags) or `MSD_musicnn` (Million Song Dataset
    tags) from the installed `musicnn` package's TensorFlow checkpoint, frozen, on CPU."""
    prefix = _checkpoint_prefix(name)
    variables = {k: v for k, v in read_tf_checkpoint(prefix).items() if not _is_optimizer_state(k)}
    model = Musicnn(n_tags=len(MODELS[name]))
    targets = dict(model.named_parameters()) | dict(model.named_buffers())
    names = _tf_variable_names()
    missing = sorted(set(names.values()) - set(variables))
    unused = sorted(set(variables) - set(names.values()))
    if missing or unused:
        raise ValueError(f"{prefix}.index does not match musicnn: missing {missing}, not used {unused}")
    for torch_name, tf_name in names.items():
        target, value = targets[torch_name], _to_torch_layout(variables[tf_name], targets[torch_name])
        if value.shape != target.shape:
            raise ValueError(
                f"{prefix}.index: {tf_name} has shape {tuple(value.shape)}, {torch_name} needs {tuple(target.shape)}"
            )
        with torch.no_grad():
            target.copy_(value)
    return model


# ---------------------------------------------------------------------------------------------
# Tagging whole clips, patch by patch.


@torch.no_grad()  # not inference_mode: its tensors could not be saved for a projector's backward
def tag(
    model: Musicnn,
    audio16k: torch.Tensor,
    hop_patches: int = PATCH_FRAMES,
    embedding: str = "penultimate",
    batch_size: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tags 16 kHz audio in 3 s patches, as musicnn's `extractor`.

    audio16k (S,) or (B, S) -> taggram (P, n_tags) and embeddings (P, D), or (B, P, ...) for a
    batch of equal-length clips. Patch p covers mel frames [p * hop_patches, p * hop_patches + 187):
    the default hop gives non-overlapping patches, and the frames after the last whole patch are
    dropped (up to 3 s), exactly as the extractor does. Clips shorter than one patch (2.976 s),
    on which the extractor crashes, are looped to that length first (musicnn's training config
    says "pad_short": "repeat-pad"), so any non-empty clip gets one patch; an empty clip is a
    ValueError. `embedding` names a per-patch output of `Musicnn.forward`: "penultimate"
    (D = 200), "max_pool" or "mean_pool" (D = 753).
    """
    if hop_patches < 1:
        raise ValueError(f"hop_patches must be a positive number of frames, got {hop_patches}")
    if embedding not in ("penultimate", "max_pool", "mean_pool"):
        raise ValueError(f"embedding must be 'penultimate', 'max_pool' or 'mean_pool', got {embedding!r}")
    audio = torch.as_tensor(audio16k, dtype=torch.float32)
    single = audio.dim() == 1
    audio = audio[None] if single else audio  # B, S
    if audio.dim() != 2 or audio.shape[1] == 0:
        raise ValueError(f"expected non-empty audio (S,) or (B, S) at 16 kHz, got shape {tuple(audio16k.shape)}")
    if audio.shape[1] < PATCH_SAMPLES:
        repeats = -(-PATCH_SAMPLES // audio.shape[1])
        audio = audio.repeat(1, repeats)[:, :PATCH_SAMPLES]  # B, S -> B, 47616

    device = next(model.parameters()).device
    mel = log_mel(audio.to(device))  # B, T, 96
    patches = mel.unfold(1, PATCH_FRAMES, hop_patches).transpose(2, 3)  # B, P, 187, 96
    batch, num_patches = patches.shape[:2]
    flat = patches.reshape(batch * num_patches, PATCH_FRAMES, N_MELS)
    taggrams, embeddings = [], []
    for chunk in flat.split(batch_size):  # bounded memory: ~25 MB of activations per patch
        out = model(chunk)
        taggrams.append(out["taggram"])
        embeddings.append(out[embedding])
    taggram = torch.cat(taggrams).reshape(batch, num_patches, -1)  # B, P, n_tags
    embeddings = torch.cat(embeddings).reshape(batch, num_patches, -1)  # B, P, D
    return (taggram[0], embeddings[0]) if single else (taggram, embeddings)

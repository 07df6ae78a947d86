"""Give a model attribute tokens and train their heads on the clips' labels.

    python -m training.attributes --model runs/base/model --manifest corpus/manifest.jsonl \
        not_music/manifest.jsonl --feature-cache runs/feature_cache --out runs/attributes/model

The projector gets one head per attribute (tempo band, tempo to 10 BPM, tonic, mode, metre,
style, dynamics, instruments) that classifies each window's frame statistics, and the mood composed
from four of them (MOOD_PARTS); its tokens are the class words' own input embeddings
(musicllm/projector.py). The heads train here, on the manifests' `train`
clips (every window of a clip carries the clip's labels), full batch, each head kept at the
epoch of its best mean accuracy on the `valid` clips (`BestHeads`; with fewer than
`min_valid_clips` of them, at the last epoch) and calibrated on them; the
later stages freeze them. Clips without a label for an attribute do not train that attribute's
head. Writes the model (with everything else it had) and `attributes.json` beside it: the
held-out accuracy of each head and its temperature; with `--fitted-out`, also the model with the
heads as the last epoch left them, fitted to the training clips: the default's stage 2 trains on
those, and `with_heads` then gives its LLM the held-out best ones.

The class words are the ones captions use (" minor", " 3/4", " jazz"), each read by the LLM
token by token, as it reads them in text.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm

from data_gen.formats import read_jsonl
from data_gen.procedural.mood import DYNAMICS, MOODS, mood
from data_gen.procedural.styles import INSTRUMENT_NAMES, STYLES
from data_gen.writers.phrases import DYNAMICS_WORDS
from musicllm.vocabulary import MODES, PITCH_CLASSES, TEMPO_BANDS, TIME_SIGNATURES, tempo_band
from musicllm.checkpoint import load_checkpoint, save_checkpoint
from musicllm.projector import MusicLLMProjector, source
from training.features import FeatureCache
from training.settings import HeadSettings

BPM_CLASSES = [str(bpm) for bpm in range(50, 210, 10)]
SOUNDS = ["music", "silence", "noise"]


def bpm_class(bpm: float) -> str:
    """The BPM_CLASSES word nearest to `bpm` (the ends take everything beyond them)."""
    return str(min(200, max(50, int(round(bpm / 10.0)) * 10)))


# Each tempo class's [low, high) BPM, for the tempo head (1 and 10000 stand for no bound)
BPM_RANGES = [[1.0 if c == BPM_CLASSES[0] else int(c) - 5.0, 10000.0 if c == BPM_CLASSES[-1] else int(c) + 5.0]
              for c in BPM_CLASSES]
BAND_RANGES = [[low, min(high, 10000.0)] for low, high in zip([1.0] + [u for u, _ in TEMPO_BANDS[:-1]],
                                                              [u for u, _ in TEMPO_BANDS])]


def heard(clip: dict) -> dict:
    """`clip` with only what its attribute tokens tell the LLM, for writing the answers it trains
    on: the tempo as the bpm head names it (" 120"), an estimate (the writers hedge it: "about
    120 BPM"), and no sections (a window's words say nothing of when a chorus starts). Answers
    stating the exact BPM or a section's start time taught the LLM to invent digits and times
    ("7.16 BPM"; README, T). The clip's own labels stay as they are for everything else."""
    labels, estimates = dict(clip.get("labels", {})), dict(clip.get("estimates", {}))
    labels.pop("sections", None)
    estimates.pop("sections", None)
    bpm = labels.pop("tempo_bpm", None)
    if isinstance(bpm, (int, float)):
        estimates["tempo_bpm"] = int(bpm_class(bpm))
    return {**clip, "labels": labels, "estimates": estimates}


# name -> (classes, the clip's class from its labels: None when unlabelled)
ATTRIBUTES = {
    # what the clip is: a labelled clip is music unless its labels say silence or noise
    # (data_gen/not_music.py); the LLM says so instead of naming a key it heard in a hiss
    "sound": (SOUNDS, lambda labels: labels.get("sound", "music") if labels else None),  # blanks the rest
    "tempo": ([name for _, name in TEMPO_BANDS], lambda labels: tempo_band(labels["tempo_bpm"]) if "tempo_bpm" in labels else None),
    # the tempo to the nearest 10 BPM as a number word (" 120"): a band alone left the LLM to
    # invent the number it was asked for ("139 BPM, which is slow")
    "bpm": (BPM_CLASSES, lambda labels: bpm_class(labels["tempo_bpm"]) if "tempo_bpm" in labels else None),
    "tonic": (PITCH_CLASSES, lambda labels: labels.get("key")),
    "mode": (MODES, lambda labels: labels.get("mode")),
    "metre": (TIME_SIGNATURES, lambda labels: labels.get("time_signature")),
    "style": (sorted(STYLES), lambda labels: labels.get("genre")),
    "mood": (list(MOODS), lambda labels: labels.get("mood")),
    # as captions say it (" moderate"): a part of the mood, and a fact captions state
    "dynamics": ([DYNAMICS_WORDS[d] for d in DYNAMICS], lambda labels: DYNAMICS_WORDS.get(str(labels.get("dynamics")).lower())),
    "instruments": (sorted(set(INSTRUMENT_NAMES.values()) | {"drums"}), lambda labels: labels.get("instruments")),
}
# words: the five likeliest instruments, as many as a procedural clip has (four roles and drums).
# With four, the 29% of training clips with five instruments were answered with one more than the
# LLM read, and it learnt to add names: on held-out clips it listed three or four where its heads
# named one or two ("piano, strings, drums and timpani" on a solo piano; README, W).
MULTI_LABEL = {"instruments": 5}
# ... of those, only the ones the head gives at least this probability (always the likeliest).
# With four words always, the LLM named instruments that were not playing: of those the head
# would name on 60 held-out test clips, 80% played when all four were shown, 91% at 0.5; every
# one named played on 29 clips, 47 at 0.5 (out of distribution: 0 and 10 of 60). Stage 2 trained
# on what this shows, the OOD instrument answers were right on 2 of 16 clips instead of 0 (README, Q).
INSTRUMENT_FLOOR = 0.5


# The mood has no head of its own: the corpus's mood is a function of the mode, the tempo, the
# dynamics and the style's character (data_gen/procedural/mood.py), so its probability is
# composed from those heads' (musicllm/projector.py), here as a table of the mood of every
# combination of their classes.
MOOD_PARTS = ["mode", "bpm", "dynamics", "style"]


def mood_table() -> list[int]:
    """The MOODS index of every (mode, bpm, dynamics, style) class combination, row-major."""
    from itertools import product

    level_of = {DYNAMICS_WORDS[level]: level for level in DYNAMICS}  # the head's word -> the label mood() reads
    classes = [ATTRIBUTES[name][0] for name in MOOD_PARTS]
    return [MOODS.index(mood(mode, float(bpm), level_of[word], STYLES[style].character))
            for mode, bpm, word, style in product(*classes)]


# The tagger's own tags, as words: the five likeliest per window. Negated tags are left out (the
# " no" of " no vocal" would be read apart from its tag).
TAG_WORDS = 5
UNSPOKEN_TAGS = {"no vocals", "no vocal", "no voice"}


# What the LLM reads before each attribute's words, so that a window reads like a line of text it
# can copy from: " sound: music tempo: fast 120 key: C# minor metre: 3/4 genre: jazz mood: calm dynamics: soft
# instruments: piano drums ... tags: ...". The bpm and the mode follow their neighbours' labels.
LABELS = {"sound": " sound:", "tempo": " tempo:", "tonic": " key:", "metre": " metre:", "style": " genre:", "mood": " mood:",
          "dynamics": " dynamics:", "instruments": " instruments:", "tags": " tags:"}


def attribute_specs(tokenizer, audio_config=None) -> list[dict]:
    """The config's `audio_attributes`: classes, their words' token ids (as written mid-sentence),
    the label read before them and how many tokens each attribute takes (projector.py). With the
    DSP features encoder the tonic and the mode come from the key head, which reads the blocks of
    pitch-class features (`pitch_features`), and the tempo band and BPM from the tempo head, which
    reads the tempogram (`tempogram_features`, classes' `bpm_ranges`), as does the metre's
    (`tempogram_pooled`), and the dynamics from the level head (`level_features`). With a tagger
    in the features encoder (`audio_config.tagger`), its tags come last, read straight off its
    outputs (`feature_index`, no head to train)."""
    words = lambda classes: [tokenizer.encode(" " + word, add_special_tokens=False) for word in classes]  # noqa: E731
    pad_id = tokenizer.encode(" ", add_special_tokens=False)[-1]

    def spec(name, classes, count, **more):
        ids = words(classes)
        label = tokenizer.encode(LABELS[name], add_special_tokens=False) if name in LABELS else []
        return {"name": name, "classes": list(classes), "multi_label": count > 1, "token_ids": ids, "pad_id": pad_id,
                "label_ids": label, "words": count, "slots": len(label) + count * max(map(len, ids)), **more}

    more = {name: {} for name in ATTRIBUTES}
    more["mood"] = {"composed_of": MOOD_PARTS, "table": mood_table()}
    more["instruments"] = {"min_probability": INSTRUMENT_FLOOR}
    # silence or noise: the other attributes' words are left blank (projector.attribute_tokens). Their
    # heads name a key and a mood in a hiss too, and the LLM, which copies them, told a noise's
    # mood and key in 18 of 48 answers (README, AC)
    more["sound"] = {"blank_others_unless": "music"}
    if hasattr(audio_config, "pitch_class_offsets"):  # the DSP features: the key has its own head
        C = audio_config.hidden_size  # a window's statistics are the frames' means, then their spreads
        offsets = audio_config.pitch_class_offsets
        groups = [list(range(o, o + 12)) for o in offsets] + [list(range(C + offsets[0], C + offsets[0] + 12))]
        more["tonic"] = {"key": "tonic", "pitch_features": groups}  # the means of each block, the chroma's spread
        more["mode"] = {"key": "mode"}
        B = audio_config.tempo_bins  # the tempo head reads the tempogram's mean and spread, and the window's
        # (and the bass changes' tempogram's mean and spread, where the features have it)
        tempogram, window = audio_config.tempogram_offsets
        channels = [list(range(tempogram, tempogram + B)), list(range(window, window + B)),
                    list(range(C + tempogram, C + tempogram + B))]
        if (bass := getattr(audio_config, "bass_tempogram_offset", None)) is not None:  # its mean and spread
            channels += [list(range(bass, bass + B)), list(range(C + bass, C + bass + B))]
        more["tempo"] = {"bpm_ranges": BAND_RANGES, "tempogram_bpm": audio_config.tempogram_bpm,
                         "tempogram_features": channels}
        more["bpm"] = {"bpm_ranges": BPM_RANGES}
        more["metre"] = {"tempogram_pooled": True}
        # the dynamics from how loud the window is played, its frames' means and spreads: among
        # all the statistics the shared head learned the training clips' dynamics by heart (README, AA)
        level = audio_config.level_features
        more["dynamics"] = {"level_features": [*level, *(C + i for i in level)]}
    specs = [spec(name, classes, MULTI_LABEL.get(name, 1), **more[name]) for name, (classes, _) in ATTRIBUTES.items()]
    if getattr(audio_config, "tagger", None):
        from musicllm.musicnn import MODELS

        offset = audio_config.hidden_size - audio_config.tagger_size  # the tag probabilities come first
        kept = [i for i, tag in enumerate(MODELS[audio_config.tagger]) if tag not in UNSPOKEN_TAGS]
        specs.append(spec("tags", [MODELS[audio_config.tagger][i] for i in kept], TAG_WORDS,
                          feature_index=[offset + i for i in kept]))
    return specs


def targets(rows: list[dict]) -> list[torch.Tensor]:
    """Per attribute: class index per clip (-1: unlabelled), or a (clips, classes) 0/1 matrix
    for the multi-label one (a row of -1: unlabelled)."""
    out = []
    for name, (classes, label_of) in ATTRIBUTES.items():
        labels = [label_of(row.get("labels") or {}) for row in rows]
        if name in MULTI_LABEL:
            out.append(torch.tensor([[float(c in lab) for c in classes] if lab else [-1.0] * len(classes) for lab in labels]))
        else:
            out.append(torch.tensor([classes.index(lab) if lab in classes else -1 for lab in labels]))
    return out


def window_stats(rows: list[dict], cache: FeatureCache) -> tuple[torch.Tensor, torch.Tensor]:
    """(windows, 2C) statistics of every clip's windows (`read_manifests` rows), and each window's clip index."""
    stats, owner = [], []
    for index, row in enumerate(tqdm(rows, desc="window statistics", unit="clip")):
        frames, frame_lens, _ = cache.get(Path(row["audio"]))
        stats.append(MusicLLMProjector.window_stats(frames, frame_lens))
        owner += [index] * len(frame_lens)
    return torch.cat(stats), torch.tensor(owner)


def labelled(target: torch.Tensor) -> torch.Tensor:
    """Mask of the rows of a `targets` tensor that carry a label."""
    return (target[:, 0] if target.dim() == 2 else target) >= 0


# The trained attributes come first in the config (attribute_specs), so zipping the projector's
# attributes with the per-ATTRIBUTES targets below visits exactly the trained ones.
def losses(projector: MusicLLMProjector, stats: torch.Tensor, window_targets: list[torch.Tensor],
           dropout: float = 0.0) -> torch.Tensor:
    total = stats.new_zeros(())
    for spec, logits, target in zip(projector.attributes, projector.attribute_logits(stats, dropout), window_targets):
        known = labelled(target)
        if not known.any() or source(spec) == "composed":
            continue  # no clip says: the head keeps its initial guess; a composed one has no head
        if spec["multi_label"]:
            total = total + F.binary_cross_entropy_with_logits(logits[known], target[known]) * len(spec["classes"]) / 8
        else:
            total = total + F.cross_entropy(logits[known], target[known])
    return total


@torch.no_grad()
def accuracy(projector: MusicLLMProjector, stats: torch.Tensor, window_targets: list[torch.Tensor]) -> dict[str, float]:
    """Per attribute, over labelled windows: the top class is right (single-label), or the top
    `words` classes are all present (multi-label: at most as many as the clip has)."""
    scores = {}
    for spec, logits, target in zip(projector.attributes, projector.attribute_logits(stats), window_targets):
        known = labelled(target)
        if not known.any():
            continue  # unlabelled: no score
        if spec["multi_label"]:
            k = torch.minimum(target[known].sum(-1), torch.tensor(float(spec["words"]))).long()
            hits = target[known].gather(1, logits[known].topk(spec["words"], dim=-1).indices)
            right = torch.stack([hits[i, : k[i]].mean() if k[i] else hits.new_ones(()) for i in range(len(k))])
        else:
            right = (logits[known].argmax(-1) == target[known]).float()
        scores[spec["name"]] = round(float(right.mean()), 4)
    return scores


# The temperatures tried for each head's calibration: 1/4 to 16, log-spaced.
TEMPERATURES = [2 ** (k / 4) for k in range(-8, 17)]


@torch.no_grad()
def calibrate(projector: MusicLLMProjector, stats: torch.Tensor, window_targets: list[torch.Tensor]) -> dict[str, float]:
    """Gives each head the TEMPERATURES one (its logits divided by it) under which the labelled
    windows' classes are likeliest (temperature scaling, fitted on held-out clips), sets it as its
    attribute's `temperature` and returns them. No head's likeliest class changes; the mood
    composed from them does: a head that fits its training clips perfectly is sure of its wrong
    answers on other clips (the dynamics head: 100% of the training clips, 64% of the validation
    ones), and the mood inherited that certainty. Composed from calibrated parts, it was right on
    69.7% of the validation clips instead of 67.1% (README, Y)."""
    for spec in projector.attributes:
        spec.pop("temperature", None)
    temperatures = {}
    for spec, logits, target in zip(projector.attributes, projector.attribute_logits(stats), window_targets):
        known = labelled(target)
        if not known.any() or source(spec) in ("composed", "tagger"):
            continue
        logits, target = logits[known].float(), target[known]
        loss = F.binary_cross_entropy_with_logits if spec["multi_label"] else F.cross_entropy
        temperatures[spec["name"]] = min(TEMPERATURES, key=lambda t: loss(logits / t, target).item())
    for spec in projector.attributes:
        if spec["name"] in temperatures:
            spec["temperature"] = temperatures[spec["name"]]
    return temperatures


# The heads that train apart (projector.py), by their parameters' names, and the sources
# (projector.source) of the attributes each one names. Each is kept at the epoch of its own best
# mean accuracy on the validation clips: in one build the tempo head was best by epoch 60-120
# and fell after, while the instruments still climbed at 300, and one epoch for all kept
# instruments at 74% instead of 76% (README, Z).
HEAD_GROUPS = {
    "key": (("attribute_key_",), ("key",)),
    "tempogram": (("attribute_tempo_", "attribute_metre_"), ("tempo", "metre")),
    "level": (("attribute_level_",), ("level",)),
    "shared": (("attribute_head.", "attribute_scale", "attribute_shift"), ("head",)),
}


class BestHeads:
    """Each HEAD_GROUPS group's parameters at the epoch of its best validation score so far."""

    def __init__(self, projector: MusicLLMProjector):
        self.projector = projector
        self.kept: dict[str, tuple[float, int, dict]] = {}  # group -> (score, epoch, its parameters)

    def offer(self, epoch: int, scores: dict[str, float]) -> None:
        for group, (prefixes, sources) in HEAD_GROUPS.items():
            names = [a["name"] for a in self.projector.attributes if source(a) in sources and a["name"] in scores]
            if not names:
                continue  # no validation clip labels what it names: it keeps its last state
            score = sum(scores[name] for name in names) / len(names)
            if group not in self.kept or score > self.kept[group][0]:
                self.kept[group] = (score, epoch, head_state(self.projector, prefixes))

    def restore(self) -> dict[str, int]:
        """Puts every kept group's parameters back; returns the epoch each was kept from."""
        for _, _, kept in self.kept.values():
            self.projector.load_state_dict(kept, strict=False)
        return {group: epoch for group, (_, epoch, _) in self.kept.items()}


# The parameters of every head, by their names' beginnings
HEAD_PREFIXES = tuple(prefix for prefixes, _ in HEAD_GROUPS.values() for prefix in prefixes)


def head_state(projector: MusicLLMProjector, prefixes: tuple[str, ...] = HEAD_PREFIXES) -> dict[str, torch.Tensor]:
    """A copy of the parameters whose names begin with one of `prefixes` (every head's)."""
    return {key: value.detach().clone() for key, value in projector.state_dict().items() if key.startswith(prefixes)}


def read_manifests(manifests: list[Path]) -> list[dict]:
    """Every clip of the manifests, its `audio` resolved against its manifest's folder."""
    return [{**row, "audio": str(manifest.parent / row["audio"])} for manifest in manifests for row in read_jsonl(manifest)]


def train_heads(model, processor, manifests: list[Path], cache_dir: Path,
                settings: HeadSettings = HeadSettings()) -> tuple[dict, dict[str, torch.Tensor]]:
    """Adds attribute tokens to `model` (in place) and trains their heads on the clips of
    `manifests`; returns the report and the heads as the last epoch left them (`head_state`):
    fitted to the training clips."""
    torch.manual_seed(settings.seed)
    config = model.config
    config.audio_attributes = attribute_specs(processor.tokenizer, config.audio_config)
    projector = MusicLLMProjector(config)
    missing = projector.load_state_dict(model.multi_modal_projector.state_dict(), strict=False).missing_keys
    assert all(key.startswith("attribute_") for key in missing), missing
    model.multi_modal_projector = projector

    rows = read_manifests(manifests)
    train = [row for row in rows if row.get("split", "train") == "train"]
    valid = [row for row in rows if row.get("split") == "valid"]
    named = " and ".join(map(str, manifests))
    if not train:
        raise ValueError(f"{named}: no clips with split 'train' to train the attribute heads on")
    cache = FeatureCache(cache_dir, model, processor)
    cache.warm([Path(row["audio"]) for row in train + valid])
    x_train, owner = window_stats(train, cache)
    y_train = [target[owner] for target in targets(train)]  # every window carries its clip's labels
    if not any(bool(labelled(target).any()) for target in y_train):
        raise ValueError(f"{named}: the train clips have none of the labels {', '.join(ATTRIBUTES)} (in 'labels')")
    x_valid, y_valid = x_train, y_train
    if valid:
        x_valid, owner = window_stats(valid, cache)
        y_valid = [target[owner] for target in targets(valid)]

    def standardise(scale, shift, values, dims):  # scale and shift that give `values` mean 0, spread 1 over dims
        mean, std = values.mean(dims), values.std(dims) + 1e-4
        scale.copy_(1 / std)
        shift.copy_(-mean / std)

    with torch.no_grad():
        standardise(projector.attribute_scale, projector.attribute_shift, x_train, 0)
        if projector.pitch_features is not None:  # one scale per block of 12, keeping transposition a rotation
            standardise(projector.attribute_key_scale, projector.attribute_key_shift,
                        x_train[:, torch.tensor(projector.pitch_features)], (0, 2))  # windows, blocks, 12
        if projector.level_features is not None:
            standardise(projector.attribute_level_scale, projector.attribute_level_shift,
                        x_train[:, torch.tensor(projector.level_features)], 0)
        if projector.tempogram is not None:  # the tempo and metre heads' input, per channel
            standardise(projector.attribute_tempo_scale, projector.attribute_tempo_shift,
                        x_train[:, torch.tensor(projector.tempogram)], (0, 2))  # windows, channels, bins
    optimizer = torch.optim.AdamW(projector.attribute_parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    best, history = BestHeads(projector), []
    for epoch in tqdm(range(1, settings.epochs + 1), desc="attribute heads", unit="epoch"):
        projector.train()
        loss = losses(projector, x_train, y_train, settings.dropout)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if epoch % 20 == 0 or epoch == settings.epochs:
            projector.eval()
            scores = accuracy(projector, x_valid, y_valid)
            history.append({"epoch": epoch, "loss": round(loss.item(), 4), "valid": scores})
            best.offer(epoch, scores)
    fitted = head_state(projector)
    if len(valid) >= settings.min_valid_clips:
        epochs = best.restore()
    else:  # too few held-out clips to choose by: the heads stay as fitted
        epochs = {group: settings.epochs for group in best.kept}
    report = {"epochs": epochs, "train_clips": len(train), "valid_clips": len(valid)}
    projector.eval()
    if valid:  # the training clips would make every head surer than it is
        report["temperatures"] = calibrate(projector, x_valid, y_valid)
    report["valid_accuracy"] = accuracy(projector, x_valid, y_valid)
    report["train_accuracy"] = accuracy(projector, x_train, y_train)
    report["history"] = history
    return report, fitted


def add_attribute_heads(model_dir: Path, manifests: list[Path], feature_cache: Path, out: Path,
                        settings: HeadSettings = HeadSettings(), fitted_out: Path | None = None) -> dict:
    """The checkpoint `model_dir` with attribute heads trained on the clips of `manifests`, saved to `out` (with its report,
    attributes.json); returns the report. `fitted_out`: the same with the heads of the last epoch,
    which fit the training clips, for the stage that trains the LLM on them (`with_heads`).
    Raises OSError/ValueError/KeyError for bad inputs."""
    model, processor = load_checkpoint(model_dir)
    if model.config.audio_attributes:
        raise ValueError(f"{model_dir} already has attribute tokens")
    report, fitted = train_heads(model, processor, manifests, feature_cache, settings)
    save_checkpoint(model, processor, out)
    (out / "attributes.json").write_text(json.dumps(report, indent=1) + "\n")
    print("held-out accuracy:", json.dumps(report["valid_accuracy"]))
    if fitted_out is not None:  # written last: a build that finds it has both
        model.multi_modal_projector.load_state_dict(fitted, strict=False)
        save_checkpoint(model, processor, fitted_out)
    return report


def with_heads(model_dir: Path, heads_dir: Path, out: Path) -> None:
    """Saves the checkpoint `model_dir` with the attribute heads (and their calibration) of
    `heads_dir`, a checkpoint with the same attributes, to `out`. The LLM reads only the words the
    heads choose, so heads trained apart can take their place: the default trains stage 2 on heads
    fitted to its training clips and keeps those of the best held-out score (README, Z)."""
    model, processor = load_checkpoint(model_dir)
    heads, _ = load_checkpoint(heads_dir)
    names = lambda m: [a["name"] for a in m.config.audio_attributes or []]  # noqa: E731
    if not names(heads) or names(model) != names(heads):
        raise ValueError(f"{heads_dir} has the attributes {names(heads)}, {model_dir} {names(model)}: not the same")
    model.multi_modal_projector.load_state_dict(head_state(heads.multi_modal_projector), strict=False)
    for spec, calibrated in zip(model.config.audio_attributes, heads.config.audio_attributes):
        spec.pop("temperature", None)
        if "temperature" in calibrated:
            spec["temperature"] = calibrated["temperature"]
    save_checkpoint(model, processor, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.attributes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint to add attribute tokens to")
    parser.add_argument("--manifest", type=Path, nargs="+", required=True,
                        help="corpus manifest JSONL(s) with clip labels and splits (clip paths relative to each)")
    parser.add_argument("--feature-cache", type=Path, required=True, help="encoder-output cache folder")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--fitted-out", type=Path, default=None,
                        help="also write the checkpoint with the heads of the last epoch (fitted to the training clips)")
    parser.add_argument("--epochs", type=int, default=HeadSettings.epochs, help="full-batch epochs (default %(default)s)")
    parser.add_argument("--min-valid-clips", type=int, default=HeadSettings.min_valid_clips,
                        help="fewest validation clips to keep each head at its best epoch by; with fewer, the "
                             "heads of the last epoch are kept (default %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        settings = HeadSettings(epochs=args.epochs, min_valid_clips=args.min_valid_clips)
        add_attribute_heads(args.model, args.manifest, args.feature_cache, args.out, settings, fitted_out=args.fitted_out)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

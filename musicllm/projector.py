"""The trained bridge from encoder frames to LLM input embeddings.

Stacking k neighbouring frames trades sequence length for width (Ultravox's projector): the LLM
sees k times fewer audio tokens, each carrying k frames. The projector knows nothing about
windows or clips; it maps a batch of frame sequences to a batch of token sequences.

With `audio_summary_tokens=1` each window's tokens start with one more: an MLP of the mean and
standard deviation of all the window's frames. Attributes of the whole window (key, tempo, style)
are then one token away instead of spread over every frame token.

With `audio_attributes` each window's tokens start with attribute tokens: a head classifies the
window's frame mean and spread into each attribute's classes (tempo band, tonic, mode, metre,
style, mood, instruments...), and the tokens are the likeliest class word's own input embeddings,
token by token (" 3/4" as " ", "3", "/", "4"; " orchestral" as " orche", "stral"), right-padded
with a space token to the attribute's longest word, after the attribute's label's tokens
(`label_ids`: " key:"); a multi-label attribute names its `words` likeliest classes so. The LLM
then reads the audio's attributes as text it can copy: a window reads " tempo: fast 120 key: C#
minor metre: 3/4 genre: jazz mood: calm instruments: piano drums ...". Mixtures of embeddings were tried
first and read worse: the mean of a word's tokens (" orche" + "stral") is no token the LLM knows,
and a probability-weighted blend of " 90" and " 120" is neither; with them the LLM picked the
heads' answer in half of the multiple-choice questions where the heads were right (README).
The heads are trained on labels (training/attributes.py) and frozen in later stages, so nothing
needs a gradient through the choice; a wrong head gives a wrong word, not a missing one.

The key (tonic and mode) has a head of its own when the tonic attribute names its
`pitch_features`: groups of 12 window statistics indexed by pitch class C..B (chroma, key
strengths, bass chroma...). Transposing music rotates every group alike, so one small MLP scores
"the tonic is pitch class k, major / minor" from the groups rotated to start at k, for each of
the 12 k: what it learns of one key holds for all twelve. The tonic's logits are that joint
score summed over the two modes, the mode's summed over the tonics. On the default corpus's
held-out clips it named the key (tonic and mode) of 96% (valid) and 90% (test), where one MLP
over all the statistics named 82% and 79% (README).

The tempo (its band, " fast", and its BPM to the nearest 10, " 120") has a head of its own when
the tempo attribute names its `tempogram_features`: the window's tempogram (onset
autocorrelation at log-spaced lags, `tempogram_bpm`) as a few channels. A tempo twice as fast
shifts the tempogram by a fixed number of bins, so a small convolution along the bins scores
"the beat is at this bin's tempo" alike at every tempo; each tempo class's logit is the bins'
scores summed over the share of each bin's range that falls in the class's `bpm_ranges`. On the
default corpus's held-out clips it named the tempo band of 93% (valid) and 88% (test), where
one MLP over all the statistics named 77% and 73%. The metre (`tempogram_pooled`) reads the same
tempogram through convolutions of its own, taken at their largest and mean over the bins: how the
bar's lag stands to the beat's, wherever the tempo puts them (metre 92% valid, 88% test, against
70% and 67%). Where the features have the tempogram of the bass line's changes
(`bass_tempogram`), it is two more channels of both heads: the bar where the bass changes note.

The dynamics has a head of its own when it names its `level_features`: the window statistics that
tell how loud the music is played (the log-mel, onset strength, RMS level, spectral centroid and
flatness, FeaturesEncoder). Read among all the statistics by the shared head, it learned the
training clips by heart (100%) and named the dynamics of 60% of the default corpus's held-out
test clips; from these alone 69% (68% of the validation clips; README, AA).

An attribute with `composed_of` (the mood) has no head: it is a function of other attributes'
classes, given as a `table` of its class for every combination of theirs (row-major: the mood of
each mode, tempo to 10 BPM, dynamics and style). Its probability is the sum, over the table's
cells, of the product of the parts' probabilities. The procedural corpus labels the mood so
(data_gen/procedural/mood.py); a head of its own learned it by heart (train 100%) and named the
mood of 50% (valid) and 44% (test) of the default corpus's held-out clips, composed 67% and 62%
(its weak part is the dynamics, 64% and 61%; with the true dynamics it would be about 90%).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers.activations import ACT2FN

from musicllm.configuration import MusicLLMConfig
from musicllm.vocabulary import MODES

KEY_HIDDEN = 64  # the key head's width (32 and 128 scored the same on held-out clips)
LEVEL_HIDDEN = 64  # the dynamics head's width (a linear head scored the same on held-out clips)
TEMPO_CHANNELS, TEMPO_KERNEL = 16, 21  # the tempo head's convolutions: 21 bins span 2.6 octaves of tempo


class MusicLLMProjector(nn.Module):
    """Shapes: W windows, F frames, C encoder width (D_enc), k stack factor, H hidden, D LLM width."""

    def __init__(self, config: MusicLLMConfig):
        super().__init__()
        self.stack_factor = config.stack_factor
        stacked = config.audio_hidden_size * config.stack_factor
        hidden = config.projector_hidden_size or config.text_config.hidden_size
        self.act = ACT2FN[config.projector_act]
        self.out_dim = config.text_config.hidden_size
        if self.stack_factor:  # 0: no frame tokens, the window is its summary and attribute tokens
            # LayerNorm first: encoder features arrive on their own scales (dB, ratios, hidden states).
            self.norm = nn.LayerNorm(stacked)
            self.linear_1 = nn.Linear(stacked, hidden)
            self.linear_2 = nn.Linear(hidden, config.text_config.hidden_size)
        if config.audio_summary_tokens not in (0, 1):
            raise ValueError(f"audio_summary_tokens must be 0 or 1, not {config.audio_summary_tokens}")
        self.summary = None
        self.extra_tokens = config.audio_extra_tokens  # summary and attribute tokens per window
        C = config.audio_hidden_size
        if config.audio_summary_tokens:
            self.summary = nn.Sequential(nn.LayerNorm(2 * C), nn.Linear(2 * C, hidden), ACT2FN[config.projector_act],
                                         nn.Linear(hidden, config.text_config.hidden_size))
        self.attributes = config.audio_attributes or []
        self.attribute_head = None
        trained = [a for a in self.attributes if source(a) == "head"]
        self.pitch_features = next((a["pitch_features"] for a in self.attributes if "pitch_features" in a), None)
        if any(source(a) == "key" for a in self.attributes):
            if self.pitch_features is None:
                raise ValueError("attributes from the key head need the tonic's `pitch_features`")
            groups = len(self.pitch_features)
            # per group (not per feature: that would tell pitch classes apart), from the training clips
            self.attribute_key_scale = nn.Parameter(torch.ones(groups))
            self.attribute_key_shift = nn.Parameter(torch.zeros(groups))
            self.attribute_key_head = nn.Sequential(nn.Linear(groups * 12, KEY_HIDDEN), ACT2FN[config.projector_act],
                                                    nn.Linear(KEY_HIDDEN, len(MODES)))
        level = [a for a in self.attributes if source(a) == "level"]
        if len(level) > 1:
            raise ValueError(f"one attribute can have `level_features`, not {[a['name'] for a in level]}")
        self.level_features = level[0]["level_features"] if level else None
        if level:  # per feature, as the shared head
            self.attribute_level_scale = nn.Parameter(torch.ones(len(self.level_features)))
            self.attribute_level_shift = nn.Parameter(torch.zeros(len(self.level_features)))
            self.attribute_level_head = nn.Sequential(nn.Linear(len(self.level_features), LEVEL_HIDDEN),
                                                      ACT2FN[config.projector_act],
                                                      nn.Linear(LEVEL_HIDDEN, len(level[0]["classes"])))
        names = [a["name"] for a in self.attributes]
        for composed in (a for a in self.attributes if source(a) == "composed"):
            parts = [next((a for a in self.attributes if a["name"] == n), None) for n in composed["composed_of"]]
            if any(p is None or p["multi_label"] or source(p) == "composed" for p in parts):
                raise ValueError(f"attribute {composed['name']!r} is composed of {composed['composed_of']}; each must be "
                                 f"a single-label attribute with logits of its own, among {names}")
            if len(composed["table"]) != int(np.prod([len(p["classes"]) for p in parts])):
                raise ValueError(f"attribute {composed['name']!r}: its table needs one class per combination of its parts")
        tempo = next((a for a in self.attributes if "tempogram_features" in a), None)
        rhythm = [a for a in self.attributes if source(a) in ("tempo", "metre")]
        self.tempogram, self.tempo_shares, self.attribute_metre_head = None, {}, None
        if rhythm:
            if tempo is None:
                raise ValueError("attributes from the tempogram need the tempo's `tempogram_features`")
            self.tempogram, act = tempo["tempogram_features"], config.projector_act
            self.attribute_tempo_scale = nn.Parameter(torch.ones(len(self.tempogram)))  # per channel, as for the key
            self.attribute_tempo_shift = nn.Parameter(torch.zeros(len(self.tempogram)))
            self.attribute_tempo_head = nn.Sequential(*tempogram_convolutions(len(self.tempogram), act),
                                                      nn.Conv1d(TEMPO_CHANNELS, 1, 1))
            # log share of each bin's tempo range in each class's: (bins, classes) per attribute
            self.tempo_shares = {a["name"]: bin_class_log_shares(tempo["tempogram_bpm"], a["bpm_ranges"])
                                 for a in rhythm if source(a) == "tempo"}
            metre = [a for a in rhythm if source(a) == "metre"]
            self.attribute_metre_head = nn.Sequential(*tempogram_convolutions(len(self.tempogram), act)) if metre else None
            self.attribute_metre_out = nn.Linear(2 * TEMPO_CHANNELS, len(metre[0]["classes"])) if metre else None
        if trained:
            classes = sum(len(a["classes"]) for a in trained)
            # Features on their own scales, standardised per feature (set from the training
            # clips' statistics, training/attributes.py): a per-window LayerNorm mixes them.
            self.attribute_scale = nn.Parameter(torch.ones(2 * C))
            self.attribute_shift = nn.Parameter(torch.zeros(2 * C))
            self.attribute_head = nn.Sequential(nn.Linear(2 * C, hidden), ACT2FN[config.projector_act],
                                                nn.Linear(hidden, classes))

    def forward(self, frames: torch.Tensor, frame_lens: torch.Tensor,
                embeddings: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (W, F, C), frame_lens (W,) -> tokens (W, A + ceil(F/k) [+1], D), token_lens (W,).
        `embeddings` (V, D): the LLM's input embedding table, needed with attribute tokens."""
        k = self.stack_factor
        W, F, C = frames.shape
        weight = next(self.parameters(), None)  # DSP features are float32; the projector may be bf16
        frames = frames.to(weight.dtype) if weight is not None else frames
        stats = self.window_stats(frames, frame_lens) if self.summary is not None or self.attributes else None
        if k:
            pad = (-F) % k
            stacked = nn.functional.pad(frames, (0, 0, 0, pad)).reshape(W, (F + pad) // k, C * k)  # W, F, C -> W, T, C*k
            hidden = self.act(self.linear_1(self.norm(stacked)))  # W, T, C*k -> W, T, H
            tokens = self.linear_2(hidden)  # W, T, H -> W, T, D
            token_lens = torch.div(frame_lens + k - 1, k, rounding_mode="floor")  # same as lengths.window_tokens
        else:  # no frame tokens
            tokens, token_lens = frames.new_zeros((W, 0, self.out_dim)), torch.zeros_like(frame_lens)
        if self.summary is not None:
            tokens = torch.cat([self.summary(stats).unsqueeze(1), tokens], dim=1)  # W, 1+T, D
        if self.attributes:
            if embeddings is None:
                raise ValueError("a projector with attribute tokens needs the LLM's input embeddings")
            tokens = torch.cat([self.attribute_tokens(stats, embeddings).to(tokens.dtype), tokens], dim=1)  # W, A+..., D
        return tokens, token_lens + self.extra_tokens

    @staticmethod
    def window_stats(frames: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
        """frames (W, F, C) -> (W, 2C): each window's frame mean and std (padding excluded)."""
        valid = (torch.arange(frames.shape[1], device=frames.device)[None, :] < frame_lens[:, None]).unsqueeze(-1)
        count = valid.sum(1).clamp(min=1)  # W, 1
        mean = (frames * valid).sum(1) / count  # W, F, C -> W, C
        std = (((frames - mean[:, None]) ** 2 * valid).sum(1) / count).sqrt()  # W, C
        return torch.cat([mean, std], dim=-1)

    def attribute_parameters(self) -> list[nn.Parameter]:
        """What training/attributes.py trains and the later stages keep frozen."""
        params = []
        if self.attribute_head is not None:
            params += [self.attribute_scale, self.attribute_shift, *self.attribute_head.parameters()]
        if self.pitch_features is not None:
            params += [self.attribute_key_scale, self.attribute_key_shift, *self.attribute_key_head.parameters()]
        if self.tempogram is not None:
            params += [self.attribute_tempo_scale, self.attribute_tempo_shift, *self.attribute_tempo_head.parameters()]
        if self.attribute_metre_head is not None:
            params += [*self.attribute_metre_head.parameters(), *self.attribute_metre_out.parameters()]
        if self.level_features is not None:
            params += [self.attribute_level_scale, self.attribute_level_shift, *self.attribute_level_head.parameters()]
        return params

    def tempogram_channels(self, stats: torch.Tensor) -> torch.Tensor:
        """(W, 2C) window stats -> (W, channels, bins): the tempogram's, standardised."""
        channels = stats[:, torch.tensor(self.tempogram, device=stats.device)]
        return channels * self.attribute_tempo_scale[:, None] + self.attribute_tempo_shift[:, None]

    def tempo_logits(self, stats: torch.Tensor) -> torch.Tensor:
        """(W, 2C) window stats -> (W, bins): the beat is at each tempogram bin's tempo."""
        return self.attribute_tempo_head(self.tempogram_channels(stats))[:, 0]

    def metre_logits(self, stats: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
        """(W, 2C) window stats -> (W, metre classes), from the tempogram's pattern wherever it lies."""
        hidden = self.attribute_metre_head(self.tempogram_channels(stats))  # W, channels, bins
        pooled = torch.cat([hidden.amax(-1), hidden.mean(-1)], dim=-1)
        return self.attribute_metre_out(nn.functional.dropout(pooled, dropout, self.training))

    def key_logits(self, stats: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
        """(W, 2C) window stats -> (W, 2, 12) logits of (mode, tonic): major C..B, then minor C..B."""
        index = torch.tensor(self.pitch_features, device=stats.device)  # G, 12
        groups = stats[:, index] * self.attribute_key_scale[:, None] + self.attribute_key_shift[:, None]  # W, G, 12
        rotate = (torch.arange(12, device=stats.device)[:, None] + torch.arange(12, device=stats.device)) % 12
        rotated = groups[:, :, rotate].transpose(1, 2).flatten(2)  # W, 12 tonics, G*12: each group from the tonic up
        return self.head_logits(self.attribute_key_head, rotated, dropout).transpose(1, 2)

    def level_logits(self, stats: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
        """(W, 2C) window stats -> (W, classes) of the attribute with `level_features`."""
        levels = stats[:, torch.tensor(self.level_features, device=stats.device)]
        return self.head_logits(self.attribute_level_head, levels * self.attribute_level_scale + self.attribute_level_shift,
                                dropout)

    def head_logits(self, head: nn.Sequential, inputs: torch.Tensor, dropout: float) -> torch.Tensor:
        """An MLP head's logits, with `dropout` on its hidden layer in training mode."""
        return head[-1](nn.functional.dropout(head[:-1](inputs), dropout, self.training))

    def attribute_logits(self, stats: torch.Tensor, dropout: float = 0.0) -> list[torch.Tensor]:
        """(W, 2C) window stats -> one (W, classes) logit tensor per attribute, in config order.
        `dropout` on the hidden layer, in training mode (the heads' own training uses it).

        An attribute with a `feature_index` (a list of feature positions) has no head: its
        classes are features that already are probabilities (a pretrained tagger's tags), and its
        logits are the logits of their window means."""
        trained = [a for a in self.attributes if source(a) == "head"]
        learned = iter([])
        if trained:
            logits = self.head_logits(self.attribute_head, stats * self.attribute_scale + self.attribute_shift,
                                      dropout)  # W, all classes
            learned = iter(torch.split(logits, [len(a["classes"]) for a in trained], dim=-1))
        key = self.key_logits(stats, dropout) if self.pitch_features is not None else None
        tempo = self.tempo_logits(stats) if self.tempo_shares else None
        out = []
        for attribute in self.attributes:
            if source(attribute) == "tagger":
                means = stats[:, attribute["feature_index"]].float()  # W, classes: the frames' mean probabilities
                out.append(torch.logit(means.clamp(1e-4, 1 - 1e-4)))
            elif source(attribute) == "key":  # the joint key's logits summed over the other half
                out.append(key.logsumexp(1) if attribute["key"] == "tonic" else key.logsumexp(2))
            elif source(attribute) == "tempo":  # the bins' logits summed into the classes' ranges
                shares = torch.as_tensor(self.tempo_shares[attribute["name"]], dtype=tempo.dtype, device=tempo.device)
                out.append((tempo[:, :, None] + shares).logsumexp(1))
            elif source(attribute) == "metre":
                out.append(self.metre_logits(stats, dropout))
            elif source(attribute) == "level":
                out.append(self.level_logits(stats, dropout))
            elif source(attribute) == "composed":
                out.append(None)  # from the others, below
            else:
                out.append(next(learned))
        # a head's `temperature` (fitted on held-out clips, training/attributes.py) calibrates its
        # probabilities, and so those of what is composed from it
        out = [logits / a["temperature"] if logits is not None and "temperature" in a else logits
               for a, logits in zip(self.attributes, out)]
        by_name = {a["name"]: logits for a, logits in zip(self.attributes, out)}
        return [composed_logits(a, by_name) if logits is None else logits for a, logits in zip(self.attributes, out)]

    def attribute_tokens(self, stats: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """(W, 2C) window stats -> (W, A, D): each attribute's likeliest class words, token by token.
        A multi-label attribute with a `min_probability` names only the classes at least that
        likely (always its likeliest); the other words' slots are its `pad_id`. Where an attribute
        with `blank_others_unless` names another class than that one (the sound: silence or
        noise, not music), every other attribute's words are pad tokens: its label stands alone,
        and a hiss has no key, tempo or mood for the LLM to read."""
        all_logits = self.attribute_logits(stats)
        blank = None  # W: the windows whose other attributes are left blank
        for attribute, logits in zip(self.attributes, all_logits):
            if "blank_others_unless" in attribute:
                blank = logits.argmax(-1) != attribute["classes"].index(attribute["blank_others_unless"])
        ids = []
        for attribute, logits in zip(self.attributes, all_logits):
            top = logits.topk(attribute["words"], dim=-1)  # W, words
            label = torch.tensor(attribute.get("label_ids", []), dtype=torch.long, device=logits.device)
            ids.append(label.expand(len(logits), -1))  # W, label tokens (" key:")
            words = word_table(attribute).to(logits.device)[top.indices]  # W, words, longest
            if attribute.get("min_probability") is not None:
                unsure = torch.sigmoid(top.values.float()) < attribute["min_probability"]
                unsure[:, 0] = False
                words = words.masked_fill(unsure[..., None], attribute["pad_id"])
            if blank is not None and "blank_others_unless" not in attribute:
                words = words.masked_fill(blank[:, None, None], attribute["pad_id"])
            ids.append(words.flatten(1))  # W, words * longest
        return embeddings[torch.cat(ids, dim=1)]  # W, A, D


def source(attribute: dict) -> str:
    """Where an attribute's logits come from: "tagger" (a `feature_index`: a pretrained tagger's
    tag probabilities), "key" (the key head: `key` is "tonic" or "mode"), "tempo" (the tempo head:
    its classes' `bpm_ranges`), "metre" (`tempogram_pooled`: the metre head), "level" (`level_features`:
    the dynamics head), "composed" (`composed_of`: other attributes' classes) or "head" (the shared one)."""
    if "composed_of" in attribute:
        return "composed"
    if "level_features" in attribute:
        return "level"
    if "feature_index" in attribute:
        return "tagger"
    if "key" in attribute:
        return "key"
    return "tempo" if "bpm_ranges" in attribute else "metre" if attribute.get("tempogram_pooled") else "head"


def composed_logits(attribute: dict, logits: dict[str, torch.Tensor]) -> torch.Tensor:
    """(W, classes) log-probabilities of a composed attribute: for each of its classes, the
    log-sum over the `table` cells that give it of the parts' summed log-probabilities."""
    joint = None
    for name in attribute["composed_of"]:  # W, cells so far: row-major, as the table
        part = logits[name].float().log_softmax(-1)
        joint = part if joint is None else (joint[:, :, None] + part[:, None, :]).flatten(1)
    table = torch.as_tensor(attribute["table"], device=joint.device)
    floor = joint.new_full((len(joint),), -1e4)  # a class no combination gives
    return torch.stack([joint[:, table == k].logsumexp(-1) if bool((table == k).any()) else floor
                        for k in range(len(attribute["classes"]))], dim=-1)


def tempogram_convolutions(channels: int, act: str) -> list[nn.Module]:
    """Two convolutions along the tempogram's bins (lags)."""
    return [nn.Conv1d(channels, TEMPO_CHANNELS, TEMPO_KERNEL, padding=TEMPO_KERNEL // 2), ACT2FN[act],
            nn.Conv1d(TEMPO_CHANNELS, TEMPO_CHANNELS, TEMPO_KERNEL, padding=TEMPO_KERNEL // 2), ACT2FN[act]]


def bin_class_log_shares(bin_bpm: list[float], ranges: list[list[float]]) -> np.ndarray:
    """(bins, classes) log of the share of each bin's tempo range (log-spaced bins: in log BPM,
    halfway to its neighbours) that lies in each class's [low, high) BPM range; about -69 where
    none does."""
    centres = np.log(np.asarray(bin_bpm, dtype=np.float64))
    half = abs(centres[1] - centres[0]) / 2
    low, high = centres - half, centres + half
    bounds = np.log(np.clip(np.asarray(ranges, dtype=np.float64), 1e-3, None))  # classes, 2
    inside = np.clip(np.minimum(high[:, None], bounds[None, :, 1]) - np.maximum(low[:, None], bounds[None, :, 0]), 0, None)
    return np.log(np.maximum(inside / (2 * half), 1e-30)).astype(np.float32)


def word_table(attribute: dict) -> torch.Tensor:
    """(classes, longest) token ids of an attribute's class words, right-padded with its `pad_id`."""
    longest = max(map(len, attribute["token_ids"]))
    return torch.tensor([ids + [attribute["pad_id"]] * (longest - len(ids)) for ids in attribute["token_ids"]])

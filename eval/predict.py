"""Phase 1 of multiple-choice evaluation: a model's answers to every question, as JSONL.

    musicllm eval predict --checkpoint CKPT --questions data/corpus/multiple_choice.csv --out preds/audio.jsonl
    musicllm eval predict --checkpoint CKPT --questions muchomusic.csv --audio-dir mc_audio/ --out preds/audio.jsonl
    musicllm eval predict ... --audio-mode none  --out preds/none.jsonl     # ablations: does it listen?
    musicllm eval predict ... --audio-mode noise --out preds/noise.jsonl
    musicllm eval predict ... --audio-mode other --out preds/other.jsonl
    python -m eval.predict ...                                              # the same
    musicllm eval score preds/*.jsonl --out scores.json                     # phase 2

Per question, in one pass over the file:
  1. greedy generation of a free answer to MuChoMusic's prompt (batched, left padding); the
     scorer parses it (eval.parsing);
  2. the log-likelihood of each option as the assistant's reply, written "(B) option text": the
     sum of the log-probabilities of the reply's tokens (the letter, the text and the end-of-turn
     marker, so an option that is only the start of a likelier reply gains nothing), and their
     count, so the scorer can rank by the sum or by the mean per token. It never depends on the
     model following the answer format. The question runs once; its options continue from its
     key/value cache (the same numbers as scoring each as a conversation of its own).
  3. the same for the option text alone as the reply, without its letter (the cloze form that
     lm-evaluation-harness uses): which answer the model would give, whatever letter it has.
The user turn is "<|audio|>\\n" + prompt; with no audio it is the prompt alone.

Audio modes (ablations that show whether the model listens; a model that scores the same
without the audio is answering from the text):
    audio   the question's own clip
    none    no audio: no placeholder in the prompt, no audio values in the batch
    noise   noise of the clip's length and RMS (pink by default; --noise white), seeded by the clip
    other   the clip of another question: distinct clips are deranged (seeded shuffle, each gets
            the next one's audio), so a question never hears its own clip, even when several
            questions share one

Rows: {id, audio_mode, model, prompt, options, option_sources, answer_index, output,
option_logprobs, option_token_counts, option_text_logprobs, option_text_token_counts, knowledge, reasoning, genre, flags, question_type,
dataset, dataset_identifier, audio, audio_shown, one_shot, seed, order}. Resumable: ids already
in --out are skipped, so a rerun after an interruption writes only what is missing.

This module knows nothing about scoring.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from data_gen.formats import JsonlWriter, read_jsonl
from data_gen.questions import LETTERS, ONE_SHOT_EXAMPLE, ORDERS, QuestionError, format_prompt, load_questions
from musicllm.configuration import AUDIO_TOKEN
from musicllm.processing import IGNORE_INDEX, render_conversation

AUDIO_MODES = ("audio", "none", "noise", "other")
NOISE_COLOURS = ("pink", "white")


def stable_seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def noise_like(clip: np.ndarray, seed: int, colour: str = "pink") -> np.ndarray:
    """Noise with the clip's length and RMS. Pink: white noise shaped by 1/sqrt(f) in the
    spectrum (-3 dB per octave), without a DC term."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(len(clip))
    if colour == "pink" and len(clip) > 1:
        spectrum = np.fft.rfft(noise)
        freqs = np.arange(len(spectrum), dtype=np.float64)
        spectrum[0] = 0.0
        spectrum[1:] /= np.sqrt(freqs[1:])
        noise = np.fft.irfft(spectrum, n=len(clip))
    target = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64)))) if len(clip) else 0.0
    current = float(np.sqrt(np.mean(np.square(noise)))) if len(noise) else 0.0
    return (noise * (target / current if current > 0 else 0.0)).astype(np.float32)


def derangement(keys: list[str], seed: int) -> dict[str, str]:
    """key -> a different key: a seeded shuffle, each taking its successor's place."""
    if len(keys) < 2:
        raise ValueError(f"audio mode 'other' needs at least 2 distinct clips, the questions have {len(keys)}")
    cycle = sorted(keys)
    rng = np.random.default_rng(seed)
    cycle = [cycle[i] for i in rng.permutation(len(cycle))]
    return {key: cycle[(i + 1) % len(cycle)] for i, key in enumerate(cycle)}


class ClipSource:
    """The audio each question is given under one audio mode."""

    def __init__(self, items: list[dict], mode: str, load, seed: int = 0, noise: str = "pink", cache: int = 8):
        if mode not in AUDIO_MODES:
            raise ValueError(f"audio mode must be one of {AUDIO_MODES}, got {mode!r}")
        self.mode, self.load, self.seed, self.noise = mode, load, seed, noise
        self.swap = {}
        if mode == "other":
            self.swap = derangement(list(dict.fromkeys(i["audio"] for i in items if i.get("audio"))), seed)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()  # questions on one clip come together
        self._cache_size = cache

    def shown_path(self, item: dict) -> str | None:
        """The file whose audio (or whose noise double) the question gets; None for no audio."""
        if self.mode == "none":
            return None
        if not item.get("audio"):
            raise QuestionError(f"question {item['id']}: no audio file (audio mode {self.mode!r} needs one)")
        return self.swap[item["audio"]] if self.mode == "other" else item["audio"]

    def clip(self, item: dict) -> np.ndarray | None:
        """The question's audio; the questions on one clip get the same array (encoded once a batch)."""
        path = self.shown_path(item)
        if path is None:
            return None
        if path not in self._cache:
            clip = self.load(path)
            self._cache[path] = noise_like(clip, stable_seed(self.seed, path), self.noise) if self.mode == "noise" else clip
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return self._cache[path]


def user_turn(prompt: str, with_audio: bool) -> list[dict]:
    return [{"role": "user", "content": (AUDIO_TOKEN + "\n" if with_audio else "") + prompt}]


def option_reply(index: int, option: str) -> str:
    return f"({LETTERS[index]}) {option}"


def generation_inputs(processor, prompts: list[str], clips: list[np.ndarray | None]):
    """Left-padded batch for `model.generate`, one row per question."""
    conversations = [user_turn(p, c is not None) for p, c in zip(prompts, clips)]
    audios = [[c] if c is not None else [] for c in clips]
    return processor(conversations, audios, add_generation_prompt=True, padding_side="left")


def reply_ids(processor, prompt: str, clip: np.ndarray | None, reply: str) -> list[int]:
    """Token ids of `reply` and its end of turn, as they follow the question's generation
    prompt (the labelled part of the rendered conversation)."""
    turn = user_turn(prompt, clip is not None) + [{"role": "assistant", "content": reply}]
    counts = [processor.num_audio_tokens(clip)] if clip is not None else []
    ids, labels = render_conversation(turn, processor.tokenizer, counts)
    return [t for t, label in zip(ids, labels) if label != IGNORE_INDEX]


@torch.no_grad()
def option_logprobs(model, prefix: dict, replies: list[list[list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log-probs of the reply's tokens, their count) for every option of every question,
    in order. `prefix`: the questions as a left-padded generation batch (with their audio, on
    the model's device); `replies[q]`: question q's options as reply token ids.

    Each question runs once; its options continue from its key/value cache, right-padded
    (4 options of ~12 tokens after a prompt of ~150: about a third of the tokens of scoring
    every option as a whole conversation)."""
    mask = prefix["attention_mask"]
    out = model(**prefix, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # B, V: each reply's first token
    options = torch.tensor([len(r) for r in replies])
    rows = torch.repeat_interleave(torch.arange(len(replies)), options).to(mask.device)  # N: each option's question
    cache = out.past_key_values
    cache.batch_select_indices(rows)  # B -> N rows: each option gets its question's keys and values
    flat = [ids for question in replies for ids in question]
    longest = max(map(len, flat))
    ids = torch.zeros(len(flat), longest, dtype=torch.long, device=mask.device)
    real = torch.zeros(len(flat), longest, dtype=torch.long, device=mask.device)
    for i, reply in enumerate(flat):
        ids[i, : len(reply)] = torch.tensor(reply)
        real[i, : len(reply)] = 1
    positions = mask.sum(-1)[rows, None] + torch.arange(longest, device=mask.device)  # after each question
    logits = model(input_ids=ids, attention_mask=torch.cat([mask[rows], real], dim=1), position_ids=positions,
                   past_key_values=cache, use_cache=True).logits.float()  # N, R, V
    logprobs = torch.cat([first[rows, None], torch.log_softmax(logits[:, :-1], dim=-1)], dim=1)  # token t from t-1
    token_logprobs = logprobs.gather(-1, ids.unsqueeze(-1)).squeeze(-1) * real
    return token_logprobs.sum(dim=1).cpu(), real.sum(dim=1).cpu()


@torch.no_grad()
def encode_clips(model, processor, clips: list[np.ndarray | None]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each shown clip's encoder frames (W_k, F_k, C) and frame lengths, in order: computed once
    per distinct clip of the batch (a clip's questions come together and share one array)."""
    encoded, done = [], {}
    for clip in clips:
        if clip is None:
            continue
        if id(clip) not in done:
            windows = {k: v.to(model.device) for k, v in processor.audio_windows([clip]).items()}
            done[id(clip)] = model.encode_audio(windows["audio_values"], windows["audio_lens"])
        encoded.append(done[id(clip)])
    return encoded


def with_frames(batch, encoded: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """`batch` with its raw audio replaced by the clips' frames (one clip per row that has
    audio, in order), zero-padded to one frame count."""
    batch = {k: v for k, v in batch.items() if k not in ("audio_values", "audio_lens")}
    if encoded:
        longest = max(f.shape[1] for f, _ in encoded)
        batch["audio_frames"] = torch.cat([torch.nn.functional.pad(f, (0, 0, 0, longest - f.shape[1])) for f, _ in encoded])
        batch["audio_frame_lens"] = torch.cat([lens for _, lens in encoded])
    return batch


def predict_batch(model, processor, items: list[dict], clips: list, prompts: list[str],
                  max_new_tokens: int) -> list[dict]:
    """Answers and option log-likelihoods for a batch of questions."""
    encoded = encode_clips(model, processor, clips)
    gen = with_frames(generation_inputs(processor, prompts, clips), encoded)
    gen = {k: v.to(model.device) for k, v in gen.items()}  # the raw audio, already encoded, stays behind
    outputs = [None] * len(items)  # 0 new tokens: ranked by log-likelihood only, no free-text answer
    if max_new_tokens:
        new_tokens = model.generate(**gen, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=processor.tokenizer.pad_token_id)
        outputs = [processor.decode(row).strip() for row in new_tokens]
    # Each option twice: "(B) option text", then the option text alone (the cloze form).
    replies = [[reply_ids(processor, prompt, clip, text)
                for text in [option_reply(k, o) for k, o in enumerate(item["options"])] + item["options"]]
               for item, prompt, clip in zip(items, prompts, clips)]
    sums, counts = option_logprobs(model, gen, replies)
    rows, at = [], 0
    for item, prompt, output in zip(items, prompts, outputs):
        n = len(item["options"])
        letter, text = slice(at, at + n), slice(at + n, at + 2 * n)
        at += 2 * n
        rows.append({"output": output, "prompt": prompt,
                     "option_logprobs": [round(float(x), 4) for x in sums[letter]],
                     "option_token_counts": [int(x) for x in counts[letter]],
                     "option_text_logprobs": [round(float(x), 4) for x in sums[text]],
                     "option_text_token_counts": [int(x) for x in counts[text]]})
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musicllm eval predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="model folder (musicllm.checkpoint)")
    parser.add_argument("--questions", required=True, type=Path, help="MuChoMusic-format CSV")
    parser.add_argument("--audio-dir", type=Path, help="folder of <dataset_identifier>.<ext> audio files")
    parser.add_argument("--audio-map", type=Path, help="JSON or CSV: dataset_identifier -> audio path")
    parser.add_argument("--out", required=True, type=Path, help="predictions JSONL (appended to; resumable)")
    parser.add_argument("--audio-mode", default="audio", choices=AUDIO_MODES, help="audio shown (default: audio)")
    parser.add_argument("--noise", default="pink", choices=NOISE_COLOURS, help="noise colour for --audio-mode noise")
    parser.add_argument("--one-shot", action="store_true", help="prepend MuChoMusic-style 1-shot text example")
    parser.add_argument("--seed", type=int, default=0, help="option order and ablation seed (default 0)")
    parser.add_argument("--order", default="balanced", choices=ORDERS, help="option order (data_gen.questions)")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--max-new-tokens", type=int, default=16,
                        help="answer length limit (default 16); 0: no free-text answer, options ranked by "
                             "log-likelihood only (about half the time)")
    parser.add_argument("--batch-size", type=int, default=8, help="questions per batch (x4 rows for options)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", default=None, help="weights dtype, e.g. bfloat16 (default: as saved)")
    return parser


def check_resume(out: Path, mode: str) -> set[str]:
    """Ids already written; refuses a file holding another audio mode's answers."""
    done, modes = set(), set()
    for row in read_jsonl(out):
        done.add(row["id"])
        modes.add(row.get("audio_mode"))
    if modes - {mode}:
        raise SystemExit(f"musicllm eval predict: {out} holds audio mode(s) {sorted(modes)}, not {mode!r}; "
                         "write each mode to its own file")
    return done


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    from musicllm.checkpoint import default_device, load_checkpoint

    try:
        items = load_questions(args.questions, args.audio_dir, args.audio_map, seed=args.seed, order=args.order,
                               require_audio=args.audio_mode != "none")
    except QuestionError as err:
        print(f"musicllm eval predict: {err}", file=sys.stderr)
        return 2
    source_items = items  # 'other' deranges over every clip of the file, so --limit does not change it
    items = items[: args.limit] if args.limit else items
    done = check_resume(args.out, args.audio_mode)
    todo = [i for i in items if i["id"] not in done]
    print(f"{len(items)} questions, {len(items) - len(todo)} already in {args.out}, {len(todo)} to answer")
    if not todo:
        return 0
    device = args.device or default_device()
    model, processor = load_checkpoint(args.checkpoint, dtype=args.dtype, device=device)
    clips = ClipSource(source_items, args.audio_mode, processor.load_audio, seed=args.seed, noise=args.noise)
    examples = [ONE_SHOT_EXAMPLE] if args.one_shot else []
    with JsonlWriter(args.out) as writer, tqdm(total=len(todo), unit="q", desc=f"predict ({args.audio_mode})") as bar:
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start:start + args.batch_size]
            prompts = [format_prompt(i["question"], i["options"], examples) for i in batch]
            audio = [clips.clip(i) for i in batch]
            answers = predict_batch(model, processor, batch, audio, prompts, args.max_new_tokens)
            for item, answer in zip(batch, answers):
                writer.write({"id": item["id"], "audio_mode": args.audio_mode, "model": str(args.checkpoint), **answer,
                              **{k: v for k, v in item.items() if k != "id"}, "audio_shown": clips.shown_path(item),
                              "one_shot": args.one_shot, "seed": args.seed, "order": args.order})
            bar.update(len(batch))
    print(f"wrote {len(todo)} rows -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

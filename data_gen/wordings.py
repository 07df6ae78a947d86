"""Question wordings written by the LLM: more ways to ask each factual question about a clip.

    python -m data_gen.wordings --out data/wordings.json [--model SmolLM2-135M-Instruct]
    musicllm data write corpus/manifest.jsonl --wordings data/wordings.json

The template writer asks each factual question (tempo, key, mode, metre, instruments, genre,
mood) in seven to thirteen wordings of its own (template_qa.QUESTIONS). A model trained on those alone
follows those strings and misreads others: the default model answered "Roughly how many beats
per minute does this go at?" with the metre. Here the LLM continues a list of a topic's template
wordings (sampled, with a fixed seed), and a continuation is kept when it is one short question
that names its topic and no other (TOPIC_WORDS; key and mode may go together) and is new. The
template writer then picks from both lists. The file names the model: these are LLM-written data.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from tqdm import tqdm

from data_gen.writers.template_qa import QUESTIONS

PROMPT_VERSION = "wordings-v1"
HEADER = "Different ways to ask the same question about a piece of music:\n"
# What a question about each topic names (lower case, whole words).
TOPIC_WORDS = {topic: re.compile(rf"\b(?:{words})\b") for topic, words in {
    "tempo": r"tempo|fast|slow|speed|pace|bpm|quick|beats per minute",
    "key": r"key|tonal|tonic",
    "mode": r"major|minor",
    "metre": r"time signature|metre|meter|bars?|measures?",
    "instruments": r"instruments?|instrumentation",
    "genre": r"genre|style|kind of music|type of music",
    "mood": r"mood|feel|feeling|emotions?|emotional|atmosphere|vibe",
}.items()}
TOGETHER = {"key": {"mode"}, "mode": {"key"}}  # topics a question may name beside its own
OPENERS = {"what", "what's", "which", "how", "is", "does", "do", "are", "can", "could", "would", "in", "at"}


def acceptable(topic: str, text: str) -> bool:
    """Is `text` one short question about `topic` and nothing else?"""
    words = text.split()
    if not text.endswith("?") or text.count("?") > 1 or not 3 <= len(words) <= 16 or any(c in text for c in '"*:'):
        return False
    if words[0].lower().strip(",") not in OPENERS:  # "This genre is what?", "So, what's..."
        return False
    named = {t for t, pattern in TOPIC_WORDS.items() if pattern.search(text.lower())}
    return topic in named and named <= {topic} | TOGETHER.get(topic, set())


def generate(model_name: str, samples: int = 32, seed: int = 0) -> dict[str, list[str]]:
    """topic -> the model's new, acceptable wordings of its question (in the order found)."""
    import random

    import torch

    from musicllm.pretrained import load_causal_lm

    tokenizer, model = load_causal_lm(model_name)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    found = {}
    for topic, own in tqdm(QUESTIONS.items(), desc="question wordings", unit="topic"):
        shown = rng.sample(own, min(4, len(own)))
        inputs = tokenizer(HEADER + "".join(f"- {q}\n" for q in shown) + "-", return_tensors="pt")
        with torch.no_grad():  # one line each: generation stops at the newline
            out = model.generate(**inputs, max_new_tokens=20, do_sample=True, temperature=0.9, top_p=0.95,
                                 num_return_sequences=samples, stop_strings=["\n"], tokenizer=tokenizer,
                                 pad_token_id=tokenizer.eos_token_id)
        seen, kept = {q.lower() for q in own}, []
        for row in out:
            text = tokenizer.decode(row[inputs.input_ids.shape[1]:], skip_special_tokens=True).split("\n")[0].strip()
            if acceptable(topic, text) and text.lower() not in seen:
                seen.add(text.lower())
                kept.append(text)
        found[topic] = kept
    return found


def write_wordings(model_name: str, out: Path, samples: int = 32, seed: int = 0) -> dict[str, list[str]]:
    """Writes {"wordings": {topic: [...]}, "provenance": ...} to `out`; returns the wordings."""
    wordings = generate(model_name, samples=samples, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"wordings": wordings, "provenance": {"writer": "llm", "model": Path(str(model_name)).name,
                                                   "prompt_version": PROMPT_VERSION, "seed": seed}}
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.rename(out)  # whole or not at all
    return wordings


def load_wordings(path: Path) -> dict[str, list[str]]:
    """The wordings of a file `write_wordings` wrote, checked: a clear error names what is wrong."""
    try:
        wordings = json.loads(Path(path).read_text())["wordings"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a wordings file ({err.__class__.__name__}: {err})") from err
    if not isinstance(wordings, dict):
        raise ValueError(f"{path}: 'wordings' should map a topic to a list of questions")
    for topic, questions in wordings.items():
        if topic not in QUESTIONS:
            raise ValueError(f"{path}: unknown topic {topic!r}; expected one of {', '.join(QUESTIONS)}")
        if not isinstance(questions, list) or not all(isinstance(q, str) and q.strip() for q in questions):
            raise ValueError(f"{path}: wordings of {topic!r} should be a list of non-empty strings")
    return wordings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_gen.wordings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct", help="causal LM folder or packaged name")
    parser.add_argument("--samples", type=int, default=32, help="continuations sampled per topic (default 32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    wordings = write_wordings(args.model, args.out, samples=args.samples, seed=args.seed)
    print(f"wrote {args.out}: " + ", ".join(f"{topic} {len(q)}" for topic, q in wordings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

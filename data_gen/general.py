"""General music questions, answered by the base LLM itself, as training conversations.

    python -m data_gen.general --model SmolLM2-135M-Instruct --out data/general.jsonl
    python -m data_gen.general --out data/general.jsonl --manifest corpus/manifest.jsonl

Fine-tuning on questions about clips teaches an LLM to answer from the audio; without text-only
conversations in the mix it also starts answering "What is a chord?" with a clip's key. These
are the base model's own greedy answers (a repetition penalty keeps them from looping) to
general questions about music, so training on them asks the LoRA to keep what the base model
knew, not to learn anything new. The questions differ from the ones the evaluation asks
(eval/follow.py's THEORY), which measure whether that general ability survived.

With --manifest, each question is also asked once with a training clip attached, with the same
answer: a user who has uploaded a song and asks "What is a cadence?" wants the general answer,
not the clip's key.

The model is any causal LM folder or packaged name (musicllm/pretrained.py). The answers are
LLM-written data: provenance names the model.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from data_gen.formats import AUDIO_TOKEN, JsonlWriter, read_jsonl, validate_conversation
from data_gen.writers.phrases import seeded_rng

QUESTIONS = [
    "What is a scale in music?", "What is the difference between melody and harmony?", "What is a cadence?",
    "What is an interval in music?", "What does tempo mean?", "What is a major chord made of?",
    "What is a minor chord?", "What is rhythm?", "What is a bar in music notation?", "What is a waltz?",
    "What does an orchestra consist of?", "What is a string quartet?", "What is a chorale?",
    "What is the role of the bass in a band?", "What is a drum kit?", "What is jazz?", "What is the blues?",
    "What is a key signature?", "What does 'allegro' mean?", "What does 'adagio' mean?", "What is counterpoint?",
    "What is a crescendo?", "What are dynamics in music?", "What is timbre?", "What is a tritone?",
    "What is a pentatonic scale?", "What is a chord progression?", "What is the circle of fifths?",
    "What instruments are in the brass family?", "What instruments are in the woodwind family?",
    "What is an arpeggio?", "What is a verse and a chorus in a song?", "What is a metronome used for?",
    "What is a sonata?", "What is folk music?", "What is a time signature?", "Why do minor keys often sound sad?",
    "What is a harmonic?", "What is polyphony?", "What is a riff?",
    "What is a melody?", "What is a note?", "What is pitch?", "What is a sharp?", "What is a flat in music?",
    "What is a rest in music?", "What is a staff in music notation?", "What is a treble clef?",
    "What is a bass clef?", "What is a fugue?", "What is a symphony?", "What is a concerto?", "What is an opera?",
    "What is a choir?", "What is a soprano?", "What does a conductor do?", "What is improvisation?",
    "What is swing in jazz?", "What is reggae?", "What is hip-hop?", "What is rock music?", "What is funk?",
    "What is a ballad?", "What is a lullaby?", "What is a march?", "What is staccato?", "What is legato?",
    "What does 'forte' mean?", "What does 'piano' mean as a dynamic marking?", "What is a dominant chord?",
    "What is a seventh chord?", "What is a modulation?", "What is a bridge in a song?", "What is a hook in pop music?",
    "What is harmony?", "What is a drone?", "What is a glissando?", "What is vibrato?", "What is a downbeat?",
    "What is a drum fill?",
]
PROMPT_VERSION = "general-v1"


def answer_all(model_name: str, questions: list[str], max_new_tokens: int = 64, batch_size: int = 20,
               repetition_penalty: float = 1.2) -> list[str]:
    """The model's greedy answers, in order (its own chat template, no system message)."""
    import torch

    from musicllm.pretrained import load_causal_lm

    tokenizer, model = load_causal_lm(model_name)
    tokenizer.padding_side = "left"
    answers = []
    for start in range(0, len(questions), batch_size):
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                 add_generation_prompt=True) for q in questions[start:start + batch_size]]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 repetition_penalty=repetition_penalty, pad_token_id=tokenizer.pad_token_id)
        answers += [tokenizer.decode(row[inputs.input_ids.shape[1]:], skip_special_tokens=True).strip() for row in out]
    return answers


def whole_sentences(text: str) -> str:
    """An answer cut at its last full sentence (the token limit may stop it mid-sentence)."""
    end = max(text.rfind(". "), text.rfind(".\n"), len(text) - 1 if text.endswith(".") else -1)
    return text[: end + 1].strip() if end > 0 else text


def training_clips(manifest: Path) -> list[Path]:
    """The train split's audio files of a corpus manifest, as absolute paths."""
    return [(manifest.parent / r["audio"]).resolve() for r in read_jsonl(manifest) if r.get("split") == "train"]


def write_general(model_name: str, out: Path, questions: list[str] = QUESTIONS, clips: list[Path] = (),
                  seed: int = 0, **settings) -> int:
    """Writes one conversation per question that got an answer, and one more with a clip attached
    when `clips` are given (chosen by `seed`); returns how many."""
    records = []
    for number, (question, answer) in enumerate(zip(questions, answer_all(model_name, questions, **settings))):
        answer = whole_sentences(answer)
        if len(answer.split()) < 3:
            continue  # nothing worth keeping
        provenance = {"writer": "llm", "model": model_name, "prompt_version": PROMPT_VERSION, "seed": seed}
        records.append(validate_conversation({
            "id": f"general:{number}", "audio": [], "task": "general", "split": "train",
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "provenance": provenance}))
        if clips:
            clip = seeded_rng(seed, question, "general").choice(clips)
            records.append(validate_conversation({
                "id": f"general:{number}:audio", "audio": [os.path.relpath(clip, out.parent.resolve())],
                "task": "general", "split": "train",
                "messages": [{"role": "user", "content": f"{AUDIO_TOKEN}\n{question}"},
                             {"role": "assistant", "content": answer}],
                "provenance": provenance}))
    out.unlink(missing_ok=True)
    with JsonlWriter(out) as writer:
        return writer.write_all(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_gen.general", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="SmolLM2-135M-Instruct", help="LLM folder, hub id or packaged name")
    parser.add_argument("--out", type=Path, required=True, help="conversations JSONL to write (replaced)")
    parser.add_argument("--manifest", type=Path, help="corpus manifest: also ask each question with one of its "
                        "training clips attached")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="answer length limit (default 64)")
    args = parser.parse_args(argv)
    try:
        clips = training_clips(args.manifest) if args.manifest else []
        if args.manifest and not clips:
            print(f"error: {args.manifest} lists no train-split clips", file=sys.stderr)
            return 2
        count = write_general(args.model, args.out, clips=clips, max_new_tokens=args.max_new_tokens)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{count} general conversations -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

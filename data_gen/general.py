"""General music questions, answered by the base LLM itself, as training conversations.

    python -m data_gen.general --model SmolLM2-135M-Instruct --out data/general.jsonl
    python -m data_gen.general --out data/general.jsonl --manifest corpus/manifest.jsonl

Fine-tuning on questions about clips teaches an LLM to answer from the audio; without text-only
conversations in the mix it also starts answering "What is a chord?" with a clip's key. These
are the base model's own greedy answers, decoded as the served model decodes (the engines'
penalty on the answer's own repeated tokens and their block on repeated runs), to general
questions about music, so training on them asks the LoRA to keep what the base model
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
    # Other forms than "What is X?": trained on that form alone, the LoRA kept the base's answers
    # for it and answered "What does BPM stand for?" with "It is Latin and Greek." and "How many
    # semitones are there in an octave?" with a clip's metre (session 21).
    "How many lines does a music staff have?", "How many strings does a violin have?",
    "How many keys does a standard piano have?", "How many players are in a string quartet?",
    "How many notes are in a pentatonic scale?", "How many movements does a symphony usually have?",
    "How many sharps are in the key of G major?", "How many strings does a bass guitar usually have?",
    "What does 'a cappella' mean?", "What does 'fortissimo' mean?", "What does 'ritardando' mean?",
    "What does 'mezzo' mean in 'mezzo-forte'?", "What does 'da capo' mean in sheet music?",
    "What does MIDI stand for?", "What does SATB stand for in choral music?", "What does DAW stand for?",
    "What does a fermata tell a player to do?", "What does a double bar line mean?",
    "Why do orchestras tune to the oboe?", "Why do guitars have frets?", "Why do singers warm up?",
    "Why does a cello sound lower than a violin?", "Why do drummers use a click track?",
    "How does a trumpet make its sound?", "How does a piano make sound?", "How do you tune a guitar?",
    "How do I start learning to read music?", "How can I keep steady time when I practise?",
    "How is a viola different from a violin?", "How is an opera different from a musical?",
    "How is a concerto different from a symphony?", "How are the keys of a piano arranged?",
    "What's the difference between rhythm and tempo?", "What's the difference between a sharp and a flat?",
    "What's the difference between a band and an orchestra?", "What's the difference between a song and a piece?",
    "Which instrument family does the saxophone belong to?", "Which instruments play the bass line in an orchestra?",
    "Which clef does the cello usually read?", "Which key signature has one flat?",
    "What is the relative minor of C major?", "What notes are in a C major chord?",
    "Who plays first violin in a string quartet?", "Where did jazz begin?", "Where did the blues come from?",
    "When do musicians use a mute?", "Can you explain what a coda is?", "Can you explain what an ostinato is?",
    "Could you tell me what a motif is?", "Please explain what a key change does to a song.",
    "Tell me about the harpsichord.", "Tell me about the French horn.", "Describe the sound of a clarinet.",
    "Describe what a conductor's baton is for.", "Name three instruments in the percussion family.",
    "Name the four voice parts of a choir.", "List three famous composers of the Baroque period.",
    "Give me one tip for singing in tune.", "Is a piano a string instrument or a percussion instrument?",
    "Are timpani tuned to a pitch?", "Is it better to learn guitar or piano first?",
    "Should beginners practise with a metronome?", "What makes a melody catchy?",
    "Why does some music give people chills?", "What instruments are in a rock band?",
]
PROMPT_VERSION = "general-v3"


def answer_all(model_name: str, questions: list[str], max_new_tokens: int = 64, batch_size: int = 20) -> list[str]:
    """The model's greedy answers, in order (its own chat template, no system message), with the
    engines' default penalties. `generate` starts from the prompt's embeddings, so the penalties see
    the answer's tokens only: transformers' repetition_penalty, used before, also penalised the
    question's words, and "What does 'andante' mean?" was answered about "anterior", "What is a
    coda?" about a "cadebra"."""
    import torch

    from musicllm.engines import DEFAULT_FREQUENCY_PENALTY, DEFAULT_NO_REPEAT_NGRAM, penalties
    from musicllm.pretrained import load_causal_lm

    tokenizer, model = load_causal_lm(model_name)
    tokenizer.padding_side = "left"
    rules = penalties(DEFAULT_FREQUENCY_PENALTY, DEFAULT_NO_REPEAT_NGRAM, tokenizer)
    answers = []
    for start in range(0, len(questions), batch_size):
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                 add_generation_prompt=True) for q in questions[start:start + batch_size]]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(inputs_embeds=model.get_input_embeddings()(inputs.input_ids),
                                 attention_mask=inputs.attention_mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, logits_processor=rules, pad_token_id=tokenizer.pad_token_id)
        answers += [tokenizer.decode(row, skip_special_tokens=True).strip() for row in out]
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

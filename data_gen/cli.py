"""`musicllm data VERB`: the data-generation pipeline, one verb per step.

    musicllm data synth --out data/corpus --clips 400      # procedural MIDI -> FluidSynth audio + manifest
    musicllm data not-music --out data/not_music            # clips of silence and noise, and their answers
    musicllm data import ~/Music --out data/mine           # a folder of audio (+ CSV/JSONL metadata) -> manifest
    musicllm data annotate data/corpus/manifest.jsonl      # MIR estimates into the manifest
    musicllm data write data/corpus/manifest.jsonl         # captions + Q&A conversations (template or LLM writer)
    musicllm data mc data/corpus/manifest.jsonl            # MuChoMusic-style multiple-choice CSV
    musicllm data card data/corpus                         # dataset card with counts and a histogram

Every verb shows progress and resumes where an interrupted run stopped.
"""

from __future__ import annotations

from musicllm.cli import dispatch

VERBS = {
    "synth": ("data_gen.procedural.corpus:main", "render the procedural corpus (exact labels)"),
    "not-music": ("data_gen.not_music:main", "clips of silence and noise, and answers that say so"),
    "import": ("data_gen.user_catalog:main", "turn a folder of audio (+ metadata) into a manifest"),
    "annotate": ("data_gen.annotate:main", "add MIR estimates to a manifest"),
    "write": ("data_gen.write:main", "write captions and Q&A conversations"),
    "mc": ("data_gen.multiple_choice:main", "write MuChoMusic-style multiple-choice questions"),
    "card": ("data_gen.card:main", "dataset card: counts and a histogram"),
}


def main(argv: list[str]) -> int:
    return dispatch("musicllm data", VERBS, argv, doc=__doc__)

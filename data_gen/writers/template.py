"""The offline writer: captions and Q&A built by rules from a clip's facts, in varied wording.

    from data_gen.writers.template import TemplateWriter
    records = list(TemplateWriter().write(clips, ["caption", "qa_factual"], seed=0))

It states only what `base.clip_facts` returns. Ground truth is stated plainly; fields that come
from MIR estimates are hedged ("around 120 BPM", "probably in A minor"). A field that is absent
is never mentioned, and a task with nothing to say about a clip is a `Skip`, not an invention.
Of a user's metadata only genre and tags are used: a title, an artist or a free description
cannot be heard in the audio, so a model should not learn to state them.

The words come from a random generator seeded by (seed, clip id, task): reruns are identical,
and a clip's text does not depend on which other clips share the batch, so a resumed run writes
what an uninterrupted one would. Q&A tasks choose their topic by rotation (a fixed per-clip
order, indexed by the seed), so seeds s, s+1, ... ask about different things.

This module knows nothing about audio, files or LLMs.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from data_gen.formats import FormatError, validate_conversation
from data_gen.writers.base import TASKS, Skip, make_conversation
from data_gen.writers.phrases import CAPTIONERS, PROMPTS, PROMPT_VERSION, Phrases, rotate, seeded_rng, usable_facts
from data_gen.writers.template_qa import QA_TOPICS


class TemplateWriter:
    """The `Writer` of rules: no model, no network, same words for the same seed."""

    name = "template"
    model = "rules"
    prompt_version = PROMPT_VERSION

    def __init__(self, seed: int = 0, wordings: dict[str, list[str]] | None = None):
        self.seed = seed  # default seed when `write` is given none
        self.wordings = wordings or {}  # topic -> the LLM's wordings of its question (data_gen/wordings.py)

    def write(self, clips: Iterable[dict], tasks: list[str], seed: int | None = None) -> Iterator[dict | Skip]:
        seed = self.seed if seed is None else seed
        provenance = {"writer": self.name, "model": self.model, "prompt_version": self.prompt_version, "seed": seed}
        for clip in clips:
            for task in tasks:
                yield self.write_one(clip, task, seed, provenance)

    def write_one(self, clip: dict, task: str, seed: int, provenance: dict) -> dict | Skip:
        if task not in TASKS:
            return Skip(clip["id"], task, f"unknown task {task!r}")
        facts = usable_facts(clip)
        say = Phrases(facts, seeded_rng(seed, clip["id"], task), self.wordings)
        if task in PROMPTS:
            question, answer = say.pick(PROMPTS[task]), CAPTIONERS[task](say)
        else:
            topics = [topic for topic, (needs, _) in QA_TOPICS[task].items() if needs(say)]
            if not topics:
                return Skip(clip["id"], task, "no facts this task can ask about")
            question, answer = QA_TOPICS[task][rotate(topics, clip["id"], task, seed)][1](say)
        if not answer:
            return Skip(clip["id"], task, "no facts to describe")
        record = make_conversation(clip, task, question, answer, dict(provenance))
        try:
            return validate_conversation(record, where=record["id"])
        except FormatError as err:
            return Skip(clip["id"], task, str(err))

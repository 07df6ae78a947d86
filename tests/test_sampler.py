"""Training batches: a pure function of (seed, step); grouped by length without losing items."""

import random
from collections import Counter

from training.data import StepSampler

RNG = random.Random(0)
LENGTHS = [RNG.randint(20, 200) for _ in range(37)]


def batches(**kw):
    settings = dict(size=len(LENGTHS), batch_size=4, steps=20, seed=3)
    settings.update(kw)
    return list(StepSampler(**settings))


def padding(run):
    return sum(max(LENGTHS[i] for i in b) * len(b) - sum(LENGTHS[i] for i in b) for b in run)


def test_grouping_keeps_each_stretch_of_items_and_cuts_padding():
    plain, grouped = batches(), batches(lengths=LENGTHS, group=5)
    for start in range(0, 20, 5):  # the same items within each run of 5 batches, re-cut
        assert Counter(i for b in plain[start:start + 5] for i in b) == Counter(i for b in grouped[start:start + 5] for i in b)
    assert padding(grouped) < padding(plain) / 3
    spans = [max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in grouped[:5]]
    assert sorted(spans) != spans  # batch order shuffled, not short-to-long


def test_grouped_batches_resume_and_split_between_processes_exactly():
    full = batches(lengths=LENGTHS, group=5)
    assert batches(lengths=LENGTHS, group=5, start_step=7) == full[7:]
    ranks = [batches(lengths=LENGTHS, group=5, batch_size=2, rank=r, world=2) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == full  # two processes see one process's global batches

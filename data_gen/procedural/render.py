"""Render MIDI to audio with FluidSynth, the soundfont loaded once per process, every render bounded.

    audio = render(song.midi, song.seconds)          # float32 mono, SAMPLE_RATE, seconds + RELEASE_SECONDS
    write_flac("clip.flac", normalize(audio))

Sample rate: 22050 Hz. It keeps everything below 11 kHz, where the soundfont's instruments
have their character, costs half of 44.1 kHz to render and store, and resamples cleanly to the
tiny encoder's 16 kHz (musicllm.audio does that on load); a 24 kHz encoder such as MERT gets an
upsampled clip with nothing above 11 kHz, which does not change what it hears of the music.

Bounds, because the fluidsynth command line once rendered a 20 GB file from a bad MIDI file:
  - length: exactly round((seconds + tail) * rate) samples, `seconds` at most `max_seconds`;
    notes sounding at `seconds` are released there and the tail holds only their release;
  - time: the synthesizer runs in blocks of BLOCK frames and a render whose wall time passes
    `timeout` stops with `RenderTimeout`; `parallel` adds a pool-level backstop for a worker
    stuck inside the C library.

The soundfont is read once per process (`soundfont`, kept in `_SOUNDFONTS`; FluidR3 takes
0.1-3 s to load, MuseScore General's compressed .sf3 about 5 s) and lent to a fresh synthesizer
for each render, so a render never depends on the one before it (see `_Soundfont`); `parallel`
loads every soundfont a corpus uses in each worker's initializer.
Output is float (`fluid_synth_write_float`), so loud passages never clip inside the synth.

Soundfonts: any General MIDI .sf2 or .sf3 by path, or one of SOUNDFONTS by its file name
("TimGM6mb.sf2"), which is looked up where its Debian package puts it; a missing one is an error
that names the package to install.

Level: `normalize` applies one fixed gain to every clip and only turns a clip down when its
peak would pass -1 dBFS. A soft song therefore stays softer than a loud one (the dynamics
label stays audible); mode="peak" scales every clip to -1 dBFS instead.

This module knows nothing about styles or labels; it renders any PrettyMIDI.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import time
from typing import Callable, Iterable, Iterator

import numpy as np

SAMPLE_RATE = 22050
RELEASE_SECONDS = 1.5        # tail after the music: the release of the last notes and the reverb
MAX_SECONDS = 900.0          # no render is longer than this (music; the tail comes on top)
DEFAULT_TIMEOUT = 120.0      # wall seconds per render
BLOCK = 2048                 # frames per synthesizer call; the timeout is checked between calls
SYNTH_GAIN = 0.5             # fluidsynth's master gain
OUTPUT_GAIN = 1.6            # fixed gain after synthesis (see `normalize`)
CEILING_DB = -1.0
DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
# General MIDI soundfonts Debian packages: file name -> (where the package puts it, the package).
SOUNDFONTS = {
    "FluidR3_GM.sf2": (DEFAULT_SOUNDFONT, "fluid-soundfont-gm"),
    "MuseScore_General.sf3": ("/usr/share/sounds/sf3/MuseScore_General.sf3", "musescore-general-soundfont-small"),
    "TimGM6mb.sf2": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
}

_SOUNDFONTS: dict = {}


class RenderError(RuntimeError):
    """A render that cannot be done (no soundfont, too long, too many parts)."""


class RenderTimeout(RenderError):
    """A render that ran past its wall-clock bound."""


def soundfont_path(path: str | os.PathLike | None = None) -> str:
    """The soundfont to use: `path` (a file, or a file name of SOUNDFONTS), else
    $MUSICLLM_SOUNDFONT, else Debian's FluidR3_GM."""
    path = os.fspath(path or os.environ.get("MUSICLLM_SOUNDFONT") or DEFAULT_SOUNDFONT)
    if os.path.isfile(path):
        return path
    name = os.path.basename(path)
    if name == path and name in SOUNDFONTS and os.path.isfile(SOUNDFONTS[name][0]):
        return SOUNDFONTS[name][0]
    if name in SOUNDFONTS:
        package = SOUNDFONTS[name][1]
        raise RenderError(f"soundfont {path} not found: install Debian's {package} "
                          f"(apt-get install {package}), or pass the path of a General MIDI .sf2/.sf3")
    raise RenderError(f"soundfont {path} not found: install Debian's fluid-soundfont-gm, or pass "
                      f"--soundfont / set MUSICLLM_SOUNDFONT to a General MIDI .sf2/.sf3 (known by name: "
                      f"{', '.join(SOUNDFONTS)})")


class _Soundfont:
    """A soundfont loaded once into an owner synthesizer, lent to a fresh synthesizer per render.

    A fresh `fluidsynth.Synth` (~1 ms to build) starts with silent reverb and chorus, LFOs at
    phase zero and an empty internal 64-frame buffer; one reused across renders carries those
    over and the same MIDI would render slightly differently each time. The sample data is
    shared (`fluid_synth_add_sfont`), so nothing is read from disk again."""

    def __init__(self, path: str, sample_rate: int):
        try:
            import fluidsynth
        except ImportError as err:  # pyfluidsynth is in the `data` extra; libfluidsynth is Debian's
            raise RenderError(f"cannot import fluidsynth ({err}): pip install 'musicllm[data]' and "
                              "apt-get install fluidsynth") from err
        self.fluidsynth, self.sample_rate, lib = fluidsynth, sample_rate, fluidsynth._fl
        for level in (1, 2, 3, 4):  # FLUID_ERR..FLUID_DBG: keep the C library off stderr
            lib.fluid_set_log_function(level, None, None)
        self.owner = self._new_synth()
        self.sfid = self.owner.sfload(path)
        if self.sfid < 0:
            raise RenderError(f"fluidsynth could not load the soundfont {path}")
        lib.fluid_synth_get_sfont_by_id.restype = ctypes.c_void_p
        lib.fluid_synth_get_sfont_by_id.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.fluid_synth_add_sfont.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.fluid_synth_remove_sfont.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.fluid_synth_write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                                ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self.sfont = lib.fluid_synth_get_sfont_by_id(self.owner.synth, self.sfid)
        self.lib = lib

    def _new_synth(self):
        synth = self.fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=float(self.sample_rate), channels=16)
        synth.setting("synth.cpu-cores", 1)
        return synth

    def borrow(self):
        """(fresh synth, soundfont id in it); give it back with `release`."""
        synth = self._new_synth()
        return synth, self.lib.fluid_synth_add_sfont(synth.synth, self.sfont)

    def release(self, synth) -> None:
        self.lib.fluid_synth_remove_sfont(synth.synth, self.sfont)
        synth.delete()

    def write(self, synth, frames: int, left: np.ndarray, right: np.ndarray, offset: int) -> None:
        self.lib.fluid_synth_write_float(synth.synth, frames, left.ctypes.data, offset, 1,
                                         right.ctypes.data, offset, 1)


def soundfont(path: str | None = None, sample_rate: int = SAMPLE_RATE) -> _Soundfont:
    """This process's loaded soundfont: read from disk on the first call only."""
    key = (soundfont_path(path), sample_rate)
    if key not in _SOUNDFONTS:
        _SOUNDFONTS[key] = _Soundfont(*key)
    return _SOUNDFONTS[key]


def _events(midi, seconds: float) -> tuple[list[tuple], list[tuple[int, int, bool]]]:
    """Sorted (time, order, kind, channel, a, b) events and the (channel, program, is_drum) of
    each instrument, every instrument on its own channel (drums on 9). Note-offs sort before
    note-ons at the same time so a repeated note is re-struck, not cut."""
    programs, events, channel = [], [], 0
    for instrument in midi.instruments:
        if instrument.is_drum:
            chan = 9
        else:
            if channel == 9:
                channel += 1
            if channel > 15:
                raise RenderError("more than 15 pitched parts: each part needs its own MIDI channel")
            chan, channel = channel, channel + 1
        programs.append((chan, instrument.program, instrument.is_drum))
        for note in instrument.notes:
            if note.start >= seconds:
                continue
            # A zero-length note still gets its off after its on (5 ms), never a stuck note.
            end = min(max(note.end, note.start + 0.005), seconds)
            events.append((note.start, 1, "on", chan, note.pitch, note.velocity))
            events.append((end, 0, "off", chan, note.pitch, 0))
        for cc in instrument.control_changes:
            if cc.time < seconds:
                events.append((cc.time, 0, "cc", chan, cc.number, cc.value))
        for bend in instrument.pitch_bends:
            if bend.time < seconds:
                events.append((bend.time, 0, "bend", chan, bend.pitch, 0))
    events.sort(key=lambda e: (e[0], e[1], e[3], e[4]))
    return events, programs


def render(midi, seconds: float | None = None, *, sample_rate: int = SAMPLE_RATE,
           soundfont_file: str | None = None, tail: float = RELEASE_SECONDS,
           timeout: float = DEFAULT_TIMEOUT, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Mono float32 audio of `midi`: `seconds` of music (default: its end time) plus `tail`."""
    seconds = float(midi.get_end_time() if seconds is None else seconds)
    if not 0 < seconds <= max_seconds:
        raise RenderError(f"cannot render {seconds:.1f} s: the bound is (0, {max_seconds:g}] s")
    font = soundfont(soundfont_file, sample_rate)
    events, programs = _events(midi, seconds)
    total = int(round((seconds + tail) * sample_rate))
    left, right = np.zeros(total, np.float32), np.zeros(total, np.float32)
    synth, sfid = font.borrow()
    started, cursor = time.monotonic(), 0

    def advance(until: int) -> int:
        position = cursor
        while position < until:
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                raise RenderTimeout(
                    f"render stopped after {elapsed:.2f} s of wall time (bound {timeout:g} s), at "
                    f"{position / sample_rate:.1f} s of {total / sample_rate:.1f} s of audio")
            n = min(BLOCK, until - position)
            font.write(synth, n, left, right, position)
            position += n
        return position

    try:
        for chan, program, is_drum in programs:
            if synth.program_select(chan, sfid, 128 if is_drum else 0, program) < 0:
                synth.program_select(chan, sfid, 128 if is_drum else 0, 0)  # a kit the font lacks
        for when, _, kind, chan, a, b in events:
            cursor = advance(min(total, int(round(when * sample_rate))))
            if kind == "on":
                synth.noteon(chan, a, b)
            elif kind == "off":
                synth.noteoff(chan, a)
            elif kind == "cc":
                synth.cc(chan, a, b)
            else:
                synth.pitch_bend(chan, a)
        advance(total)
    finally:
        font.release(synth)
    return 0.5 * (left + right)


def normalize(audio: np.ndarray, mode: str = "ceiling", ceiling_db: float = CEILING_DB) -> np.ndarray:
    """"ceiling": a fixed gain, turned down only where the peak would pass `ceiling_db`;
    "peak": every clip's peak at `ceiling_db`. Silence stays silence."""
    ceiling = 10 ** (ceiling_db / 20)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0:
        return audio.astype(np.float32)
    if mode == "peak":
        gain = ceiling / peak
    elif mode == "ceiling":
        gain = min(OUTPUT_GAIN, ceiling / peak)
    else:
        raise ValueError(f"bad normalize mode {mode!r}, expected 'ceiling' or 'peak'")
    return (audio * gain).astype(np.float32)


def write_flac(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    import soundfile as sf

    sf.write(os.fspath(path), audio, sample_rate, format="FLAC", subtype="PCM_16")


# ----------------------------------------------------------------------------- parallel
def init_worker(soundfont_file: str | list[str] | None, sample_rate: int) -> None:
    """Pool initializer: one thread per worker, the soundfont(s) loaded once, here."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for path in soundfont_file if isinstance(soundfont_file, (list, tuple)) else [soundfont_file]:
        soundfont(path, sample_rate)


def _call(packed):
    fn, task = packed
    try:
        return task, fn(task), None
    except Exception as err:  # reported to the parent, which carries on with the other tasks
        return task, None, f"{type(err).__name__}: {err}"


def parallel(fn: Callable, tasks: Iterable, *, workers: int = 2, soundfont_file: str | list[str] | None = None,
             sample_rate: int = SAMPLE_RATE, backstop: float = 4 * DEFAULT_TIMEOUT) -> Iterator[tuple]:
    """(task, result, error message or None) for each task, in completion order.

    `fn` must be a module-level function (it is sent to worker processes). workers=0 runs in
    this process. If no result at all arrives for `backstop` seconds, a worker is stuck where
    the per-render timeout cannot reach it: the pool is terminated and `RenderTimeout` raised."""
    tasks = list(tasks)
    if not tasks:
        return
    workers = min(workers, len(tasks))
    if workers <= 0:
        init_worker(soundfont_file, sample_rate)
        for task in tasks:
            yield _call((fn, task))
        return
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    pool = context.Pool(workers, initializer=init_worker, initargs=(soundfont_file, sample_rate))
    try:
        results = pool.imap_unordered(_call, [(fn, task) for task in tasks])
        for _ in tasks:
            try:
                yield results.next(timeout=backstop)
            except multiprocessing.TimeoutError:
                raise RenderTimeout(f"no render finished within {backstop:g} s; the worker pool "
                                    "was stopped (rerun to resume)") from None
        pool.close()
    finally:
        pool.terminate()
        pool.join()


"""Where musicllm keeps what it builds: one cache folder, `$MUSICLLM_HOME` or ~/.cache/musicllm."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("MUSICLLM_HOME") or Path.home() / ".cache" / "musicllm")


def default_model_dir() -> Path:
    """The embedded default's checkpoint (written by `musicllm quickstart`)."""
    return home() / "default" / "model"


def has_default_model() -> bool:
    """Whether `musicllm quickstart` has published the default checkpoint (it appears whole or not at all)."""
    return (default_model_dir() / "config.json").is_file()


def default_model() -> Path:
    """The default checkpoint folder. Only `musicllm quickstart` (and `musicllm demo`, which runs it)
    builds it; when it is missing, every other command stops here and says how to build it."""
    folder = default_model_dir()
    if not has_default_model():
        raise SystemExit(f"error: there is no default model at {folder}: build it with `musicllm quickstart` "
                         "(or start `musicllm demo`, which builds it first), or give a checkpoint with --checkpoint")
    return folder


def replace_folder(new: Path, old: Path) -> None:
    """Puts the folder `new` where `old` is (or is not yet): two renames on one file system."""
    if old.exists():
        retired = old.with_name(f"{old.name}.old-{os.getpid()}")
        os.replace(old, retired)
        os.replace(new, old)
        shutil.rmtree(retired)
    else:
        os.replace(new, old)

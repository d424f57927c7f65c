# Pixio: `make demo` and `make test` set everything up on a fresh machine, then run.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# Debian packages the project needs (each later part adds its own here).
# Mesa EGL for headless MuJoCo rendering (MUJOCO_GL=egl).
# open3d needs libusb-1.0-0 (import) and Vulkan (offscreen renderer).
# Chromium (headless, software WebGL) for the tests that open the viewer pages.
APT_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri libusb-1.0-0 libvulkan1 mesa-vulkan-drivers chromium
export MUJOCO_GL ?= egl
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test lint bench clean

setup: $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml setup.py Makefile | system-deps
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	# UniCeption only as the tests' independent reference for the MapAnything modules: its
	# declared torchaudio pin cannot be met beside torch 2.14.1, so no deps (its modules need
	# only these pure-Python packages)
	$(PIP) install -q --no-deps uniception==0.1.7 jaxtyping==0.3.11 wadler-lindig==0.1.8 einops==0.8.1
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/pixio-demo
	$(VENV)/bin/pixio-robot demo
	$(VENV)/bin/pixio-recon-demo

# One thread per process: the tests use tiny tensors (thread sync would dominate) and several
# of them start 2-process torch.distributed groups on this 2-core machine.
test: setup
	$(VENV)/bin/ruff check .
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) benchmarks/encoder_speed.py

clean:
	rm -rf $(VENV) outputs .pytest_cache

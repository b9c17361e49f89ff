# Bootstraps .venv from the package registries and runs everything from it.
# No global installs: only `make system-deps` uses apt-get, for the system packages it names.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# torch with its CUDA libraries is ~8 GB installed; a wheel cache beside it would double that.
export PIP_NO_CACHE_DIR := 1

.PHONY: all venv system-deps demo test lint typecheck unit bench clean

all: test

$(STAMP): pyproject.toml robot_ws/pypi_interfaces/build.sh
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null && $(HAVE_SYSTEM_LIBS) || $(MAKE) system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,ros-build]'
	bash robot_ws/pypi_interfaces/build.sh $(VENV)
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the stack needs from the system (run as root, or with sudo present).
# libusb/libgomp: open3d's shared libraries; libsdformat-dev + ignition-tools: `ign sdf -k`,
# the real SDFormat checker the world tests run; cmake + g++: tf2_msgs, built from rosidl
# (robot_ws/pypi_interfaces: PyPI has no tf2_msgs wheel).
SYSTEM_PACKAGES := python3-venv python3-dev libusb-1.0-0 libgomp1 libsdformat-dev ignition-tools \
	cmake g++
HAVE_SYSTEM_LIBS := /sbin/ldconfig -p | grep -q 'libusb-1.0.so.0 ' \
	&& /sbin/ldconfig -p | grep -q 'libgomp.so.1 ' && command -v ign >/dev/null \
	&& command -v cmake >/dev/null && command -v g++ >/dev/null
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES)

demo: $(STAMP)
	$(BIN)/crawler demo

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/crawler bench firmware --json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

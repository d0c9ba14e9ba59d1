#!/usr/bin/env bash
# Create .venv with everything the suite needs. The pinned CPU build of torch goes first so that
# pip never pulls the multi-GB CUDA build; on a GPU machine install a CUDA torch instead.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/dvc config core.analytics false

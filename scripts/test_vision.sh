#!/usr/bin/env bash
# The optional vision extra: torchvision/timm interop tests in their own venv (.venv-vision, ~5.5 GB: this
# machine's torchvision build needs torch 2.14.1). Never part of the default test run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-vision/bin/python ] || python3 -m venv .venv-vision
.venv-vision/bin/pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
.venv-vision/bin/pip install --quiet --disable-pip-version-check -e ".[test,vision]"
.venv-vision/bin/python -m pytest tests_vision "$@"

#!/usr/bin/env bash
# The optional Hugging Face extra: transformers interop tests in their own venv (.venv-hf, 1.4 GB). torch is
# pinned and installed first, so pip never swaps it; transformers is pinned by the extra. Never part of the
# default test run. Models are built from configs: nothing is downloaded (HF_HUB_OFFLINE=1).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-hf/bin/python ] || python3 -m venv .venv-hf
.venv-hf/bin/pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv-hf/bin/pip install --quiet --disable-pip-version-check "torch==2.13.0" -e ".[test,hf]"
.venv-hf/bin/python -c 'import torch, transformers as t; v = torch.__version__
assert v.split("+")[0] == "2.13.0", f"the hf venv has torch {v}, not 2.13.0"; print(f"torch {v}, transformers {t.__version__}")'
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv-hf/bin/python -m pytest tests_hf "$@"

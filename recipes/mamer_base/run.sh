#!/usr/bin/env bash
# mamer-base, the released model, from ../shared/data to src/mamer/pretrained/mamer-base: one command.
#   bash recipes/mamer_base/run.sh [DATA_ROOT]
# 1. the five corpora in one label space (4 s), 2. features + training (config mamer_base; about 45 min on 2
# CPU cores with features cached, 5 min more to extract them), 3. per-corpus test reports, card and release.
# Evidence and the dedicated models: docs/mamer-base.md.
set -euo pipefail
root=${1:-../shared/data}
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mamer prepare --corpus mamer-base --root "$root" --out mamer_runs/mamer_base/manifest.jsonl
mamer train --config mamer_base
python recipes/mamer_base/release.py mamer_runs/mamer_base/mamer_base src/mamer/pretrained/mamer-base --overwrite

#!/usr/bin/env bash
# mamer-base, the released model, from ../shared/data to src/mamer/pretrained/mamer-base: one command.
#   bash recipes/mamer_base/run.sh [DATA_ROOT [section.key=value ...]]
# 1. the five corpora in one label space (4 s), 2. features + training (config mamer_base; about 45 min on 2
# CPU cores with features cached, 5 min more to extract them), 3. per-corpus test reports, card and release.
# WORK (default mamer_runs/<CONFIG>) holds the manifest, features and run; RELEASE (default
# src/mamer/pretrained/mamer-base) receives the release; CONFIG (default mamer_base, the released v1) names the
# recipe: mamer_base_v2 is the v2 candidate (nEMO added, its corpus mamer-base-v2); further arguments are
# overrides for `mamer train` (the test suite runs it on a few rows of each corpus with tiny encoders so).
# Evidence and the dedicated models: docs/mamer-base.md.
set -euo pipefail
root=${1:-../shared/data}
shift $(($# > 0 ? 1 : 0))
config=${CONFIG:-mamer_base}
work=${WORK:-mamer_runs/$config}
release=${RELEASE:-src/mamer/pretrained/mamer-base}
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mamer prepare --corpus "${config//_/-}" --root "$root" --out "$work/manifest.jsonl"
mamer train --config "$config" "data.manifest=$work/manifest.jsonl" "data.features=$work/features" \
  "run_dir=$work/$config" "$@"
python recipes/mamer_base/release.py "$work/$config" "$release" --overwrite

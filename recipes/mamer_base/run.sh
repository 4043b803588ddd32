#!/usr/bin/env bash
# mamer-base, the released model, from ../shared/data to src/mamer/pretrained/mamer-base: one command.
#   bash recipes/mamer_base/run.sh [DATA_ROOT [section.key=value ...]]
# 1. the five corpora in one label space (4 s), 2. features + training (config mamer_base; about 45 min on 2
# CPU cores with features cached, 5 min more to extract them), 3. per-corpus test reports, card and release.
# WORK (default mamer_runs/<CONFIG>) holds the manifest, features and run; RELEASE (default
# src/mamer/pretrained/mamer-base) receives the release; CONFIG (default mamer_base, the released v1) names the
# recipe: mamer_base_v2 is the v2 candidate (nEMO added, its corpus mamer-base-v2); further arguments are
# overrides for `mamer train` (the test suite runs it on a few rows of each corpus with tiny encoders so).
# AUGMENT (default none) trains on the manifest with one degraded copy of each training clip (`mamer augment`,
# docs/data.md#augmented-copies): per-clip (a chain per copy) or per-speaker (a chain per speaker's copies, a
# speaker of their own); halve train.corpus_oversample and train.audio_oversample with it (each copied clip is
# drawn twice). The v2 candidate with copies (docs/mamer-base.md, "Augmented copies"):
#   CONFIG=mamer_base_v2 AUGMENT=per-speaker bash recipes/mamer_base/run.sh ../shared/data \
#     train.batching=by_modality train.audio_batch_size=16 "train.corpus_oversample={emodb: 6, nemo: 1}" \
#     train.audio_oversample=3
# Evidence and the dedicated models: docs/mamer-base.md.
set -euo pipefail
root=${1:-../shared/data}
shift $(($# > 0 ? 1 : 0))
config=${CONFIG:-mamer_base}
work=${WORK:-mamer_runs/$config}
release=${RELEASE:-src/mamer/pretrained/mamer-base}
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
manifest=$work/manifest.jsonl
mamer prepare --corpus "${config//_/-}" --root "$root" --out "$manifest"
case ${AUGMENT:-none} in
  none) ;;
  per-clip) mamer augment --manifest "$manifest" --out "$work/augmented"; manifest=$work/augmented/manifest.jsonl ;;
  per-speaker) mamer augment --manifest "$manifest" --out "$work/augmented" --per-speaker
    manifest=$work/augmented/manifest.jsonl ;;
  *) echo "AUGMENT must be none, per-clip or per-speaker, not ${AUGMENT}" >&2; exit 2 ;;
esac
mamer train --config "$config" "data.manifest=$manifest" "data.features=$work/features" \
  "run_dir=$work/$config" "$@"
python recipes/mamer_base/release.py "$work/$config" "$release" --overwrite

#!/usr/bin/env bash
# The torchrun training path on a GPU machine, in a few minutes:
#   1. `torchrun --nproc_per_node 1 -m mamer train` on a synthetic corpus with the fallback encoders (log-mel,
#      hashed words): a process group of one on NCCL, DistributedDataParallel, bf16 autocast;
#   2. the training-step throughput (benchmarks/train_step.py, bf16), eager;
#   3. the same training run with train.compile=true;
#   4. the training-step throughput of the compiled model.
# Run from the repository root: bash benchmarks/ddp_gpu_check.sh. Wheels the machine lacks may lie in .whl/.
# The log goes to $OUT/ddp_gpu_check.log (OUT defaults to /tmp/ddp_gpu_check); the exit status is the number of
# steps that failed or timed out.
# SMOKE=1 (the test suite, on a CPU): steps 1 and 2 on the CPU (gloo, fp32) with a tiny corpus, one epoch and
# one timed step of batch 4; steps 3 and 4 are left out (compiling on a CPU takes minutes). It checks the script still runs.
set -uo pipefail
out=${OUT:-/tmp/ddp_gpu_check}
smoke=${SMOKE:-0}
work=$(mktemp -d)
mkdir -p "$out"
exec > >(tee "$out/ddp_gpu_check.log") 2>&1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ "$smoke" = 1 ]; then
  device=cpu precision=fp32 speakers=4 per_speaker=4 epochs=1 steps=1 batch=4 sizes=quickstart
else
  device=cuda precision=bf16 speakers=8 per_speaker=32 epochs=10 steps=20 batch=64 sizes=quickstart,gpu-large
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  *(['nccl', torch.cuda.nccl.version()] if torch.cuda.is_available() else []))"
failed=0

# The corpus and its features (extracted here, so the runs below time training alone).
python3 - "$work" "$speakers" "$per_speaker" <<'PY' || failed=$((failed + 1))
import sys
from pathlib import Path

from mamer.config import load_config
from mamer.data.synthetic import generate_corpus
from mamer.data.extract import prepare_features

work, speakers, per_speaker = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
manifest = generate_corpus(work / "corpus", speakers, per_speaker, seed=0, split_speakers=(speakers - 2, 1, 1),
                           progress=False)
overrides = [f"data.manifest={manifest}", f"data.features={work / 'features'}", "data.audio_encoder=logmel",
             "data.text_encoder=hashed"]
print("features:", prepare_features(load_config("quickstart", overrides), progress=False))
PY

train() {  # name, time limit in s, extra overrides
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout "$limit" python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m mamer train \
    --config quickstart "data.manifest=$work/corpus/manifest.jsonl" "data.features=$work/features" \
    data.audio_encoder=logmel data.text_encoder=hashed "train.device=$device" "train.precision=$precision" \
    "train.epochs=$epochs" train.patience=99 train.progress=false "run_dir=$work/$name" "$@" 2>&1 |
    grep -E "best dev score|Error" || { echo "$name: FAILED or timed out"; failed=$((failed + 1)); }
  echo "$name: $((SECONDS - started)) s for the whole command, start-up included"
}

throughput() {  # time limit in s, train_step.py arguments
  local limit=$1
  shift
  timeout "$limit" python3 benchmarks/train_step.py --device "$device" --precision "$precision" \
    --batch-size "$batch" --steps "$steps" "$@" || { echo "throughput $*: FAILED or timed out"; failed=$((failed + 1)); }
}

train eager 60
throughput 45 --sizes "$sizes"
if [ "$smoke" != 1 ]; then
  train compiled 90 train.compile=true
  throughput 50 --sizes gpu-large --compile compiled
fi
echo "steps failed: $failed"
exit "$failed"

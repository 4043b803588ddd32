#!/usr/bin/env bash
# The torchrun training path on a GPU machine, in a few minutes:
#   1. `torchrun --nproc_per_node 1 -m mamer train` on a synthetic corpus with the fallback encoders (log-mel,
#      hashed words): a process group of one on NCCL, DistributedDataParallel, bf16 autocast;
#   2. the training-step throughput (benchmarks/train_step.py, bf16), eager;
#   3. the same training run with train.compile=true;
#   4. the training-step throughput of the compiled model.
# Run from the repository root: bash benchmarks/ddp_gpu_check.sh. Wheels the machine lacks may lie in .whl/.
# The log goes to $OUT/ddp_gpu_check.log (OUT defaults to /tmp/ddp_gpu_check).
set -uo pipefail
out=${OUT:-/tmp/ddp_gpu_check}
work=$(mktemp -d)
mkdir -p "$out"
exec > >(tee "$out/ddp_gpu_check.log") 2>&1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl', torch.cuda.nccl.version())"

# The corpus and its features (extracted here, so the runs below time training alone).
python3 - "$work" <<'PY'
import sys
from pathlib import Path

from mamer.config import load_config
from mamer.data.synthetic import generate_corpus
from mamer.data.extract import prepare_features

work = Path(sys.argv[1])
manifest = generate_corpus(work / "corpus", 8, 32, seed=0, split_speakers=(6, 1, 1), progress=False)
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
    data.audio_encoder=logmel data.text_encoder=hashed train.device=cuda train.precision=bf16 \
    train.epochs=10 train.patience=99 train.progress=false "run_dir=$work/$name" "$@" 2>&1 |
    grep -E "best dev score|Error" || echo "$name: FAILED or timed out"
  echo "$name: $((SECONDS - started)) s for the whole command, start-up included"
}

train eager 60
timeout 45 python3 benchmarks/train_step.py --device cuda --sizes quickstart,gpu-large --precision bf16 \
  --batch-size 64 --steps 20 || echo "eager throughput: FAILED or timed out"
train compiled 90 train.compile=true
timeout 50 python3 benchmarks/train_step.py --device cuda --sizes gpu-large --precision bf16 \
  --compile compiled --batch-size 64 --steps 20 || echo "compiled throughput: FAILED or timed out"

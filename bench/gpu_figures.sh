#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md ("On one GPU"): run from the checkout's root on a machine with a CUDA GPU
# and charlens importable. Each part runs as a whole process under its own time limit, so a slow part cannot take the
# others' time; logs and times go to the folder given (default gpu-figures/). Name parts to run only those
# (speed_base speed_small main_job_en analyze induction; default all).
#   bash bench/gpu_figures.sh [OUT [PART...]]
set -uo pipefail
out=${1:-gpu-figures}
parts=" ${*:2} "
[ "$parts" = "  " ] && parts=" speed_base speed_small main_job_en analyze induction "
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  lscpu | grep 'Model name'; echo "cores: $(nproc)"; } 2>&1 | tee "$out/machine.txt"

part() {  # part NAME SECONDS COMMAND...: run COMMAND with a time limit, its output to NAME.txt, its time to times.txt
  local name=$1 limit=$2; shift 2
  [[ $parts == *" $name "* ]] || return 0
  local start; start=$(date +%s%N)
  echo "== $name: $*" | tee -a "$out/times.txt"
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $(( ($(date +%s%N) - start) / 1000000 )) ms" | tee -a "$out/times.txt"
  tail -n 25 "$out/$name.txt"
}

# The trainer's step, lever by lever: float32 eager, bfloat16 autocast, bfloat16 + torch.compile.
part speed_base 120 $py bench/train_speed.py --device cuda --preset base --rounds 3 --iters 20
part speed_small 60 $py bench/train_speed.py --device cuda --preset small --rounds 3 --iters 20
# The main job's English half as a GPU user runs it (defaults: auto device and dtype, compile on CUDA, seeds in turn).
part main_job_en 240 $py train.py --lang en --seeds 4 --snapshots 8
cp checkpoints/en_s0.log.jsonl "$out/main_job_en_s0.log.jsonl" 2>/dev/null
# A checkpoint trained on the GPU, analysed (the analyzer runs on the CPU).
part analyze 90 $py analyze.py --ckpt checkpoints/en_s0.pt --out /tmp/report_en_s0 --quiet
# The synthetic induction task, seed 0, with its analysis.
part induction 100 $py bench/induction_formation.py --seeds 0 --dtypes bfloat16 --no-control --out /tmp/induction

#!/usr/bin/env bash
# The CUDA / NCCL check of recnas, in one prepared run of at most 8 minutes on a GPU host:
#
#   bash benchmarks/gpu_check.sh                  # on a machine with an NVIDIA GPU
#   bash benchmarks/gpu_check.sh --cpu-dry-run    # the same steps on CPU at tiny scale (tests the script)
#
# Steps (each under `timeout`, cut to what is left of the budget; a step with no time left is skipped):
#   setup           RECNAS_DEVICE=cuda bash scripts/setup.sh (the README's setup; CUDA torch + fbgemm-gpu)
#   preflight       versions (torch, CUDA, NCCL, FBGEMM, TorchRec); one step of a sharded table on the GPU
#   pipeline_1proc  `recnas demo` on CUDA + NCCL, world size 1: synthetic rows, supernet warm-up, SiGeo
#                   search, export, production training of the searched model and of TorchRec's DLRM
#   bench           benchmarks/bench_train.py --device cuda: warm-up and standalone training beside TorchRec
#                   DLRM (and a FLOP-matched DLRM) on the same GPU in the same run
#   pipeline_2proc  the same demo under torchrun, 2 processes; on a host with one GPU the two ranks share it,
#                   which NCCL refuses ("Duplicate GPU detected"): reported as `unsupported`, not a failure
#   tests           the test files whose code runs on the GPU (RECNAS_DEVICE=cuda), minus the 2-process ones
#
# Results: ${OUT:-runs/gpu_check}/summary.md, summary.json and logs/<step>.log (8 files at most); the runs
# themselves go to ${GPU_CHECK_WORK:-runs/gpu_check_work}. Exit code: 0 every step that ran passed,
# 1 a step failed or timed out, 2 bad arguments, 3 no GPU here (nothing run; see --cpu-dry-run).
#
# Options:
#   --cpu-dry-run   run every step on CPU (gloo) at tiny scale, to check the script itself
#   --skip-setup    do not run scripts/setup.sh (use the environment as it is)
#   --python PY     the Python of an environment that already holds torch (CUDA), fbgemm-gpu and torchrec;
#                   implies --skip-setup (default: ${RECNAS_VENV:-.venv}/bin/python)
#   --budget S      the whole run's time limit in seconds (default 480)
#   --only A,B      run only these steps (e.g. --only preflight,bench); setup always runs unless skipped
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

DRY=0 SKIP_SETUP=0 BUDGET=480 PY="" ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY=1 ;;
    --skip-setup) SKIP_SETUP=1 ;;
    --python) [ $# -ge 2 ] || { echo "gpu_check: --python needs a path" >&2; exit 2; }; PY=$2; SKIP_SETUP=1; shift ;;
    --budget) [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || { echo "gpu_check: --budget needs a number of seconds" >&2; exit 2; }
              BUDGET=$2; shift ;;
    --only) [ $# -ge 2 ] || { echo "gpu_check: --only needs step names" >&2; exit 2; }; ONLY=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$DRY" = 0 ] && ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; }; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or lists none); nothing was run. Run it on a GPU host, or use --cpu-dry-run to exercise its steps on CPU." >&2
  exit 3
fi

START=$(date +%s)
DEADLINE=$((START + BUDGET))
OUT_DIR=${OUT:-runs/gpu_check}
WORK=${GPU_CHECK_WORK:-runs/gpu_check_work}
LOGS=$OUT_DIR/logs
mkdir -p "$LOGS" "$WORK"
: >"$WORK/steps.tsv"
rm -f "$WORK/bench_train.json"
PY=${PY:-${RECNAS_VENV:-.venv}/bin/python}
if [ "$DRY" = 1 ]; then DEVICE=cpu MODE=cpu-dry-run; else DEVICE=cuda MODE=gpu; fi
export RECNAS_DEVICE=$DEVICE PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
for v in RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT; do unset "$v"; done

# Scale: a few minutes of GPU work, or seconds of CPU work in the dry run.
if [ "$DRY" = 1 ]; then
  DEMO=(--set data.synth_rows=3000 --set data.hash_size=1000 --set space=tiny --set supernet.batch_size=128
        --set estimator.batches=2 --set estimator.batch_size=128 --set search.budget=8 --set search.population=4
        --set search.sample=2 --set search.children=4 --set final.batch_size=128)
  BENCH=(--steps 3 --warmup-steps 2 --warm 1 --rows 1000 --batch-size 64 --space tiny --threads 1)
  TESTS=(tests/test_gpu_check.py -k "device")
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
  DEMO=(--set data.synth_rows=40000 --set search.budget=48 --set search.population=16 --set search.sample=8)
  BENCH=(--steps 100 --warmup-steps 30 --warm 10 --rows 100000 --batch-size 4096)
  TESTS=(tests/test_train.py tests/test_estimators.py tests/test_study_context.py tests/test_search_final.py
         tests/test_prod_train.py -m "not distributed" -k "not torchrun")
fi
DEMO+=(--set "data.cache=$WORK/cache")

declare -A CAP=([setup]=150 [preflight]=60 [pipeline_1proc]=150 [bench]=150 [pipeline_2proc]=90 [tests]=180)
[ "$DRY" = 1 ] && CAP=([setup]=60 [preflight]=60 [pipeline_1proc]=150 [bench]=240 [pipeline_2proc]=150 [tests]=60)

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$WORK/steps.tsv"; }

wanted() { [ "$1" = setup ] || [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# run_step NAME KIND CMD...: KIND is `required` (a failure fails the check) or `optional` (the 2-process run).
run_step() {
  local name=$1 kind=$2; shift 2
  wanted "$name" || return 0
  local now left t log rc secs status note first
  now=$(date +%s)
  left=$((DEADLINE - now - 15))   # 15 s kept for the summary
  if [ "$left" -lt 20 ]; then
    record "$name" skipped 0 "no time left in the ${BUDGET} s budget"
    echo "== gpu_check: $name skipped (no time left)"
    return 0
  fi
  t=${CAP[$name]}
  [ "$t" -le "$left" ] || t=$left
  log=$LOGS/$name.log
  echo
  echo "================ gpu_check [$MODE]: $name (limit ${t} s; $((now - START)) s elapsed) ================"
  echo "\$ $*" | tee "$log"
  set +e
  timeout -k 10 "$t" "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  set -e
  secs=$(($(date +%s) - now))
  note=""
  if [ "$rc" = 0 ]; then
    status=pass
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    status=timeout note="stopped after ${t} s"
  else
    first=$(grep -E -m1 'Error|error:|FAILED|gpu_check preflight:' "$log" || grep -v '^[[:space:]]*$' "$log" | tail -n1 || true)
    status=fail note="exit $rc: $(printf '%s' "$first" | cut -c1-160 | tr '\t|' '  ')"
  fi
  if [ "$status" != pass ] && [ "$kind" = optional ] && grep -qE "Duplicate GPU detected *: *rank" "$log"; then
    status=unsupported note="NCCL refuses two ranks on one GPU (Duplicate GPU detected)"
  elif [ "$status" != pass ] && [ "$kind" = optional ]; then
    note="(optional) $note"
  fi
  record "$name" "$status" "$secs" "$note"
  echo "== gpu_check: $name $status in ${secs} s ${note:+($note)}"
  [ "$status" = pass ] || [ "$kind" = optional ]
}

FAILED=0
step() { run_step "$@" || FAILED=1; }

echo "gpu_check [$MODE]: device $DEVICE, budget ${BUDGET} s, results in $OUT_DIR, runs in $WORK"
[ "$DRY" = 1 ] || nvidia-smi -L

if [ "$SKIP_SETUP" = 0 ]; then
  step setup required env RECNAS_DEVICE="$DEVICE" bash scripts/setup.sh
else
  record setup skipped 0 "--skip-setup / --python: using $PY as it is"
fi
if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null 2>&1; then
  record preflight fail 0 "no Python at $PY (setup failed?)"
  FAILED=1
else
  step preflight required "$PY" benchmarks/gpu_check.py preflight --device "$DEVICE"
fi
if grep -qE $'^(setup|preflight)\t(fail|timeout)' "$WORK/steps.tsv"; then
  echo "gpu_check: the environment is not ready (see $LOGS/); the model steps are skipped"
  for s in pipeline_1proc bench pipeline_2proc tests; do wanted "$s" && record "$s" skipped 0 "environment not ready"; done
else
  rm -rf "$WORK/pipeline_1proc" "$WORK/pipeline_2proc"
  step pipeline_1proc required "$PY" -m recnas demo --no-progress "${DEMO[@]}" --set "output=$WORK/pipeline_1proc"
  step bench required "$PY" benchmarks/bench_train.py --device "$DEVICE" --json "$WORK/bench_train.json" "${BENCH[@]}"
  step pipeline_2proc optional "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 \
    -m recnas demo --no-progress "${DEMO[@]}" --set "output=$WORK/pipeline_2proc"
  PYTEST=("$PY" -m pytest -q -p no:cacheprovider)
  "$PY" -c "import pytest_timeout" 2>/dev/null && PYTEST+=(--timeout 150)
  step tests required "${PYTEST[@]}" "${TESTS[@]}"
fi

echo
echo "================ gpu_check [$MODE]: summary ================"
SUMMARY_PY=python3
command -v python3 >/dev/null 2>&1 || SUMMARY_PY=$PY
"$SUMMARY_PY" benchmarks/gpu_check.py summary --work "$WORK" --out "$OUT_DIR" --device "$DEVICE" --mode "$MODE" \
  --budget "$BUDGET" || FAILED=1
echo "gpu_check: $(( $(date +%s) - START )) s in all; summary in $OUT_DIR/summary.md"
exit "$FAILED"

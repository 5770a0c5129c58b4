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
#   bench_gpu_pilot a slice of the GPU tier's pilot (pipelines/bench_gpu.yaml, 20 architectures x 3 seeds):
#                   `recnas bench build` until the step's limit (finished rows are kept, the run in progress
#                   is lost), then `recnas bench ceiling`; its 10M rows are prepared in the background from
#                   the start of the check (~4 min of CPU), so the pilot's time goes to training. Its rows
#                   come back in OUT/bench_gpu_pilot/ (build.json, groundtruth.csv, ceiling_projection.md);
#                   kept in reports/bench_gpu/pilot/, the next slice imports them (--pilot-import)
#   pipeline_2proc  the same demo under torchrun, 2 processes; on a host with one GPU the two ranks share it,
#                   which NCCL refuses ("Duplicate GPU detected"): reported as `unsupported`, not a failure
#   tests           the test files whose code runs on the GPU (RECNAS_DEVICE=cuda), minus the 2-process ones
#
# Results: ${OUT:-runs/gpu_check}/summary.md, summary.json, logs/<step>.log and bench_gpu_pilot/ (8 files at
# most: when there would be more, the logs come as one logs.tar.gz); the runs themselves go to
# ${GPU_CHECK_WORK:-runs/gpu_check_work}. Exit code: 0 every step that ran passed,
# 1 a step failed or timed out, 2 bad arguments, 3 no GPU here (nothing run; see --cpu-dry-run).
#
# Time: steps run in the order above, each cut to what is left of the budget (480 s: a device session has
# ~15 minutes in all, and one command at most 10). In the default run the pilot gets up to --pilot-seconds
# after the CUDA checks of pipeline_1proc and bench (its data is ready by then), and pipeline_2proc and
# tests get what is left, often nothing. A session spent on the pilot alone:
#   bash benchmarks/gpu_check.sh --python python3 --only preflight,bench_gpu_pilot --budget 540 --pilot-seconds 520
# and one spent on the CUDA checks alone: --only preflight,pipeline_1proc,bench,pipeline_2proc,tests.
#
# Options:
#   --cpu-dry-run   run every step on CPU (gloo) at tiny scale, to check the script itself
#   --skip-setup    do not run scripts/setup.sh (use the environment as it is)
#   --python PY     the Python of an environment that already holds torch (CUDA), fbgemm-gpu and torchrec;
#                   implies --skip-setup (default: ${RECNAS_VENV:-.venv}/bin/python)
#   --budget S      the whole run's time limit in seconds (default 480)
#   --only A,B      run only these steps (e.g. --only preflight,bench); setup always runs unless skipped
#   --pilot-seconds S  the pilot step's limit (default 240; the budget left cuts it as any step's)
#   --pilot-import DIR rows of earlier pilot slices to resume from (default on a GPU: reports/bench_gpu/pilot
#                   where it holds a build.json; none in the dry run)
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

DRY=0 SKIP_SETUP=0 BUDGET=480 PY="" ONLY="" PILOT_SECONDS=240 PILOT_IMPORT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY=1 ;;
    --skip-setup) SKIP_SETUP=1 ;;
    --python) [ $# -ge 2 ] || { echo "gpu_check: --python needs a path" >&2; exit 2; }; PY=$2; SKIP_SETUP=1; shift ;;
    --budget) [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || { echo "gpu_check: --budget needs a number of seconds" >&2; exit 2; }
              BUDGET=$2; shift ;;
    --only) [ $# -ge 2 ] || { echo "gpu_check: --only needs step names" >&2; exit 2; }; ONLY=$2; shift ;;
    --pilot-seconds) [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || { echo "gpu_check: --pilot-seconds needs a number of seconds" >&2; exit 2; }
              PILOT_SECONDS=$2; shift ;;
    --pilot-import) [ $# -ge 2 ] && [ -f "$2/build.json" ] || { echo "gpu_check: --pilot-import needs a folder with a build.json" >&2; exit 2; }
              PILOT_IMPORT=$2; shift ;;
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
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # recnas from this checkout, also for a --python without it
for v in RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT; do unset "$v"; done

# Scale: a few minutes of GPU work, or seconds of CPU work in the dry run.
if [ "$DRY" = 1 ]; then
  DEMO=(--set data.synth_rows=3000 --set data.hash_size=1000 --set space=tiny --set supernet.batch_size=128
        --set estimator.batches=2 --set estimator.batch_size=128 --set search.budget=8 --set search.population=4
        --set search.sample=2 --set search.children=4 --set final.batch_size=128)
  BENCH=(--steps 3 --warmup-steps 2 --warm 1 --rows 1000 --batch-size 64 --space tiny --threads 1)
  TESTS=(tests/test_gpu_check.py -k "device")
  PILOT=(--set data.synth_rows=3000 --set data.hash_size=1000 --set space=tiny --set num_archs=4
         --set "train.seeds=[0,1]" --set train.batch_size=128 --set train.eval_batch_size=1024 --set train.workers=1
         --set train.threads=1 --set train.checkpoint_every=0 --set train.device=cpu
         --set "predictors.train_fractions=[0.5]")
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
  DEMO=(--set data.synth_rows=40000 --set search.budget=48 --set search.population=16 --set search.sample=8)
  BENCH=(--steps 100 --warmup-steps 30 --warm 10 --rows 100000 --batch-size 4096)
  TESTS=(tests/test_train.py tests/test_estimators.py tests/test_study_context.py tests/test_search_final.py
         tests/test_prod_train.py -m "not distributed" -k "not torchrun")
  PILOT=(--set num_archs=20 --set "train.seeds=[0,1,2]")
  [ -z "$PILOT_IMPORT" ] && [ -f reports/bench_gpu/pilot/build.json ] && PILOT_IMPORT=reports/bench_gpu/pilot
fi
DEMO+=(--set "data.cache=$WORK/cache")
PILOT+=(--set "data.cache=$WORK/cache" --set "output=$WORK/bench_gpu_pilot")
[ "$DRY" = 1 ] && PILOT_IMPORT=""

declare -A CAP=([setup]=150 [preflight]=60 [pipeline_1proc]=150 [bench]=150 [bench_gpu_pilot]=$PILOT_SECONDS
                [pipeline_2proc]=90 [tests]=180)
[ "$DRY" = 1 ] && CAP=([setup]=60 [preflight]=60 [pipeline_1proc]=150 [bench]=240 [bench_gpu_pilot]=$PILOT_SECONDS
                       [pipeline_2proc]=150 [tests]=60)

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
  GPU_CHECK_STEP_LIMIT=$t timeout -k 10 "$t" "$@" 2>&1 | tee -a "$log"
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
# The pilot's data (10M rows on a GPU) is prepared in the background from here on, niced, so that it is
# ready when the pilot step comes; ended with the script.
PREP_PID=""
if wanted bench_gpu_pilot; then
  rm -rf "$WORK/bench_gpu_pilot" "$WORK/pilot_data.rc" "$WORK/bench_gpu_pilot.json"
  ( set +e; timeout -k 10 "$BUDGET" nice -n 10 "$PY" benchmarks/gpu_check.py pilot-data --pipeline pipelines/bench_gpu.yaml \
      "${PILOT[@]}" >"$WORK/pilot_data.log" 2>&1; echo $? >"$WORK/pilot_data.rc" ) &
  PREP_PID=$!
fi
stop_prep() { [ -z "$PREP_PID" ] || { pkill -P "$PREP_PID" 2>/dev/null; kill "$PREP_PID" 2>/dev/null; } || true; }
trap stop_prep EXIT

if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null 2>&1; then
  record preflight fail 0 "no Python at $PY (setup failed?)"
  FAILED=1
else
  step preflight required "$PY" benchmarks/gpu_check.py preflight --device "$DEVICE"
fi
if grep -qE $'^(setup|preflight)\t(fail|timeout)' "$WORK/steps.tsv"; then
  echo "gpu_check: the environment is not ready (see $LOGS/); the model steps are skipped"
  for s in pipeline_1proc bench bench_gpu_pilot pipeline_2proc tests; do wanted "$s" && record "$s" skipped 0 "environment not ready"; done
else
  rm -rf "$WORK/pipeline_1proc" "$WORK/pipeline_2proc"
  step pipeline_1proc required "$PY" -m recnas demo --no-progress "${DEMO[@]}" --set "output=$WORK/pipeline_1proc"
  step bench required "$PY" benchmarks/bench_train.py --device "$DEVICE" --json "$WORK/bench_train.json" "${BENCH[@]}"
  step bench_gpu_pilot required "$PY" benchmarks/gpu_check.py pilot --pipeline pipelines/bench_gpu.yaml "${PILOT[@]}" \
    --out "$OUT_DIR/bench_gpu_pilot" --json "$WORK/bench_gpu_pilot.json" --data-rc "$WORK/pilot_data.rc" \
    ${PILOT_IMPORT:+--import "$PILOT_IMPORT"}
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
# the device tool brings back 8 files at most: with more, the step logs travel as one archive
if [ "$(find "$OUT_DIR" -type f | wc -l)" -gt 8 ] && [ -d "$LOGS" ]; then
  tar -czf "$OUT_DIR/logs.tar.gz" -C "$OUT_DIR" logs && rm -rf "$LOGS"
fi
echo "gpu_check: $(( $(date +%s) - START )) s in all; summary in $OUT_DIR/summary.md"
exit "$FAILED"

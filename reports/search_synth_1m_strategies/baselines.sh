#!/bin/bash
# After the searches: the pipeline's DeepFM-like / DCN-v2-like baselines (not in the other run) and DLRM (a check that
# benchmarks/peers.py reproduces the other run's seed-0 DLRM row), seed 0, the final stage's recipe.
cd /work/main
source .venv/bin/activate
export OMP_NUM_THREADS=1
while kill -0 $(cat runs/issue12_live/driver.pid) 2>/dev/null; do sleep 15; done
echo "== baselines start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -v python benchmarks/peers.py data/cache/synth_1m-b6f38829e8cf --models --baselines dlrm deepfm dcnv2 \
  --fraction 0.25 --seeds 0 --batch-size 512 --threads 1 --out runs/issue12_live/baselines_f025_s0.csv \
  > runs/issue12_live/baselines.log 2> runs/issue12_live/baselines.err
echo "== baselines rc $? end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"

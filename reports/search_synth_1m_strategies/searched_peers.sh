#!/bin/bash
# The 9 searched models of the three live searches, trained as benchmarks/peers.py trains the evolution run's
# (runs/issue16/final.sh): train_export, init scratch, seed 0, 1 epoch on the first 199,680 training rows.
cd /work/main
source .venv/bin/activate
export OMP_NUM_THREADS=1
args=()
for s in weaknas bonas emprox; do
  for d in runs/search_synth_1m_$s/export/0*; do
    n=$(basename $d); args+=("$s searched #${n:1:1} (${n:3:8})=$d")
  done
done
echo "== start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "%U user %S sys %e wall" python benchmarks/peers.py data/cache/synth_1m-b6f38829e8cf --models --baselines \
  --exports "${args[@]}" --fraction 0.25 --seeds 0 --batch-size 512 --threads 1 --out runs/issue12_live/searched_peers_s0.csv
echo "== end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"

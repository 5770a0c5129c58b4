#!/bin/bash
# One search at a time, one thread each: weaknas, bonas, EmProx-guided evolution on the shipped 1M-row pipeline.
cd /work/main
source .venv/bin/activate
export OMP_NUM_THREADS=1
COMMON="--set supernet.reuse=runs/search_synth_1m_v2 --set final.baselines=[] --threads 1 --no-progress"
run() {  # name, overrides...
  name=$1; shift
  echo "== $name start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -v recnas search pipelines/search_synth_1m.yaml "$@" --set output=runs/search_synth_1m_$name $COMMON \
     > runs/issue12_live/$name.log 2> runs/issue12_live/$name.err
  echo "== $name rc $? end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
}
run weaknas --set "search={strategy: weaknas, budget: 256, seed: 0}"
run bonas --set "search={strategy: bonas, budget: 256, seed: 0}"
run emprox --set search.strategy=guided_evolution --set "search.params={predictor: emprox}"

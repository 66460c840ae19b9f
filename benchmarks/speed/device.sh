#!/usr/bin/env bash
# The GPU checks of issue 6 in one short run (a lent machine's time is scarce): the vectorized
# replications against the looped ones, and the forest's sweep time at large n.
#   bash benchmarks/speed/device.sh OUT_DIR [SMOKE]
# OUT_DIR receives the CSVs and logs. A second argument shrinks every size (a check that the
# script runs, e.g. on the CPU). Wheels of packages the machine lacks may wait in .whl/.
set -u
out=${1:?usage: device.sh OUT_DIR [SMOKE]}
smoke=${2:-}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 ITELIB_JAX_CACHE=off
python3 - <<'PY' 2>&1 | tee "$out/device.txt" || exit 1
import jax, itelib
print(jax.devices(), jax.default_backend(), "itelib", itelib.__version__)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$out/device.txt" 2>&1

if [ -n "$smoke" ]; then
    sizes=(--n 200 --warmup 60 --draws 40); reps=(4 2); forest_n=(1000); sweeps=(--warmup 5 --samples 5 --extra-sweeps 5)
else
    sizes=(--n 500); reps=(32 3); forest_n=(100000 1000000); sweeps=(--warmup 20 --samples 20 --extra-sweeps 40)
fi
run() {  # name seconds command...: a stage that overruns is stopped, the next one still runs
    local name=$1 limit=$2; shift 2
    echo "== $name ($(date +%T))"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log" | grep -vi warn
}
run vectorized 230 python3 benchmarks/speed/replications.py "${sizes[@]}" \
    --replications "${reps[0]}" --modes vectorized --out "$out/replications.csv"
run looped 130 python3 benchmarks/speed/replications.py "${sizes[@]}" \
    --replications "${reps[1]}" --modes looped --chain-method vectorized --out "$out/replications.csv"
run forest 200 python3 benchmarks/speed/forest.py --samplers itelib --n "${forest_n[@]}" \
    "${sweeps[@]}" --out "$out/forest.csv"
echo "== done ($(date +%T))"

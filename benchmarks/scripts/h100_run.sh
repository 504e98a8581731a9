#!/usr/bin/env bash
# One device session: install, check the kernels on the GPU (conformance), then time them.
# Usage (on the device machine, from the repo root): bash benchmarks/scripts/h100_run.sh STAGE...
# A run that sets TESSERA_TUNED_CONFIG_DIR=$OUT/configs reads configs tuned earlier in the same run first.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TESSERA_HOME=${OUT:-/tmp}/home TESSERA_CACHE=/tmp/tcache
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . -e plugins/cpu -e plugins/triton -e plugins/cuda -e plugins/rocm -e plugins/xpu >/dev/null 2>&1
for stage in "$@"; do
  case "$stage" in
    quick) tessera conformance run --platform cuda --quick --out "$OUT/conformance_quick" 2>&1 | tail -45 ;;
    full) tessera conformance run --platform cuda --full --out "$OUT/conformance_full" 2>&1 | tail -60 ;;
    full_dense) tessera conformance run --platform cuda --full --out "$OUT/conformance_full_dense" \
        --ops paged_attention,linear,linear_fp8,sample,rotary_embedding,rms_norm,add_rms_norm,silu_and_mul,kv_cache_write \
        2>&1 | tail -4 ;;
    ops=*) tessera conformance run --platform cuda --ops "${stage#ops=}" --out "$OUT/conformance_ops" 2>&1 | tail -30 ;;
    bench) tessera bench kernels --out "$OUT/bench_kernels.json" 2>&1 | grep -v "^{" | tail -40 ;;
    bench_dense) tessera bench kernels --op paged_attention,linear_fp8,linear,rms_norm,silu_and_mul \
        --out "$OUT/bench_kernels.json" 2>&1 | grep -v "^{" | tail -40 ;;
    bench=*) tessera bench kernels --op "${stage#bench=}" --out "$OUT/bench_${stage#bench=}.json" 2>&1 | tail -20 ;;
    decode) python3 benchmarks/scripts/decode_step.py --out "$OUT/decode_step.json" 2>&1 | grep -v "falls back" | tail -6 ;;
    profile) python3 benchmarks/scripts/profile_decode.py --out "$OUT/profile_decode.json" 2>&1 | grep -v "falls back\|Warn" | tail -30 ;;
    fp8m) python3 benchmarks/scripts/fp8_small_m.py --out "$OUT/fp8_small_m.json" 2>&1 | tail -30 ;;
    tune_prefill) tessera tune triton_paged_attention --out "$OUT/configs" --iters 20 \
        --shapes "seqs=8,context=2048,decode=0;seqs=2,context=2048,decode=0" 2>&1 | grep -E "best|wrote|rror" ;;
    smoke) python3 benchmarks/scripts/engine_smoke.py --out "$OUT/engine_smoke.json" 2>&1 | grep -v "Warn\|Writing\|Loading\|deprecat\|falling back\|falls back" ;;
    *) echo "unknown stage $stage" ;;
  esac
done

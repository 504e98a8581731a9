#!/usr/bin/env bash
# Sanity of the current tree on the GPU (quick conformance of the portable kernels, smoke), then a
# prefill re-tune at the benchmark shape and the attention benchmark.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TESSERA_HOME=$OUT/home TESSERA_CACHE=/tmp/tcache
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . -e plugins/cpu -e plugins/triton -e plugins/cuda -e plugins/rocm -e plugins/xpu >/dev/null 2>&1
python3 -c "from tessera_triton.common import supported_launch_options as s; print('launch options', sorted(s()))"
tessera conformance run --platform cuda --quick --ops paged_attention,rms_norm,add_rms_norm,silu_and_mul,sample,linear_fp8 2>&1 | grep -E "passed|^fail|^error"
tessera tune triton_paged_attention --out "$OUT/configs" --iters 20 --shapes "seqs=8,context=2048,decode=0" 2>&1 | grep -E "best|rror"
TESSERA_TUNED_CONFIG_DIR=$OUT/configs tessera bench kernels --op paged_attention --out "$OUT/bench_attention.json" 2>&1 | grep -v "^{\|^ \|^}" | tail -14

#!/usr/bin/env bash
# Tune the triton pack's kernels on the present NVIDIA card; files land in $OUT/configs/<kernel>/<device>.json.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TESSERA_CACHE=/tmp/tcache
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . -e plugins/cpu -e plugins/triton -e plugins/cuda >/dev/null 2>&1
dir="$OUT/configs"
tune() { timeout 200 tessera tune "$@" --out "$dir" --iters 10 2>&1 | grep --line-buffered -E "best|wrote|rror" | cut -c1-200 ; }
tune triton_paged_attention --shapes "seqs=1,context=4096,decode=1;seqs=8,context=8192,decode=1;seqs=64,context=4096,decode=1;seqs=256,context=1024,decode=1;seqs=2,context=2048,decode=0;seqs=8,context=2048,decode=0"
tune triton_rms_norm --shapes "tokens=1,hidden=4096;tokens=64,hidden=4096;tokens=8192,hidden=4096"
tune triton_add_rms_norm --shapes "tokens=1,hidden=4096;tokens=64,hidden=4096;tokens=8192,hidden=4096"
tune triton_silu_and_mul --shapes "tokens=1,inter=14336;tokens=64,inter=14336;tokens=8192,inter=14336"
ls -R "$dir"

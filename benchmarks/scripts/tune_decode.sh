#!/usr/bin/env bash
# Re-tune only the decode and prefill attention shapes on the present NVIDIA card.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TESSERA_CACHE=/tmp/tcache
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . -e plugins/cpu -e plugins/triton -e plugins/cuda >/dev/null 2>&1
tessera tune triton_paged_attention --out "$OUT/configs" --iters 20 \
  --shapes "seqs=1,context=4096,decode=1;seqs=8,context=8192,decode=1;seqs=16,context=4096,decode=1;seqs=64,context=4096,decode=1;seqs=256,context=1024,decode=1;seqs=2,context=2048,decode=0" 2>&1 | grep -E "best|wrote|rror"

#!/usr/bin/env bash
# MoE and hybrid models on the present GPU: the conformance model level (tiny Qwen3-MoE and Bamba
# through the Triton kernels against the reference platform), the engine smoke run, and the
# qwen3-30b-a3b-24l and bamba-9b throughput lines beside transformers.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TESSERA_HOME=${OUT:-/tmp}/home TESSERA_CACHE=/tmp/tcache
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . -e plugins/cpu -e plugins/triton -e plugins/cuda >/dev/null 2>&1
quiet() { grep --line-buffered -v "falls back\|Warn\|Writing\|Loading\|deprecat" ; }
for stage in "$@"; do
  case "$stage" in
    conformance) timeout 300 tessera conformance run --platform cuda --quick --out "$OUT/conformance_quick" 2>&1 | grep --line-buffered -E "model|passed|failed" | tail -12 ;;
    smoke) timeout 200 python3 benchmarks/scripts/engine_smoke.py --out "$OUT/engine_smoke.json" 2>&1 | quiet | tail -8 ;;
    qwen3moe) timeout 400 tessera bench throughput --preset qwen3-30b-a3b-24l --num-prompts 64 --input-len 256 --output-len 256 --compare hf --out "$OUT/throughput_qwen3-30b-a3b-24l.json" 2>&1 | quiet | tail -4 ;;
    bamba) timeout 400 tessera bench throughput --preset bamba-9b --num-prompts 64 --input-len 256 --output-len 256 --compare hf --out "$OUT/throughput_bamba-9b.json" 2>&1 | quiet | tail -4 ;;
    *) echo "unknown stage $stage" ;;
  esac
done

#!/usr/bin/env bash
# End-to-end benchmarks on the present GPU: throughput (64 x 256 -> 256) and latency (1 x 128 -> 256), with transformers.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TESSERA_CACHE=/tmp/tcache
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . -e plugins/cpu -e plugins/triton -e plugins/cuda >/dev/null 2>&1
tessera bench throughput --preset llama3-8b --num-prompts 64 --input-len 256 --output-len 256 --compare hf --out "$OUT/throughput_llama3-8b.json" 2>&1 | grep -v "falls back" | tail -3
tessera bench latency --preset llama3-8b --input-len 128 --output-len 256 --compare hf --out "$OUT/latency_llama3-8b.json" 2>&1 | grep -v "falls back" | tail -3

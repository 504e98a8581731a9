#!/usr/bin/env bash
# The MoE and Mamba2 kernels on the present NVIDIA card: conformance of their ops, then timing.
# Usage (device machine, repo root): bash benchmarks/scripts/moe_mamba_h100.sh [check] [bench] [tune]
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TESSERA_HOME=${OUT:-/tmp}/home TESSERA_CACHE=/tmp/tcache
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . -e plugins/cpu -e plugins/triton -e plugins/cuda >/dev/null 2>&1
OPS=moe_route,moe_experts,causal_conv1d,causal_conv1d_update,ssd_chunk_scan,selective_state_update,gated_rms_norm
tune() { timeout 240 tessera tune "$@" --out "$OUT/configs" --iters 10 2>&1 | grep --line-buffered -E "best|wrote|rror" | cut -c1-300 ; }
for stage in "$@"; do
  case "$stage" in
    check) tessera conformance run --platform cuda --full --ops "$OPS" --out "$OUT/conformance_moe_mamba" 2>&1 | tail -25 ;;
    bench) tessera bench kernels --op "$OPS" --out "$OUT/bench_moe_mamba.json" 2>&1 | grep -v "^{" | tail -22 ;;
    tune)
      tune triton_moe_experts --shapes "tokens=1,experts=128,inter=768,hidden=2048,top_k=8;tokens=64,experts=128,inter=768,hidden=2048,top_k=8;tokens=256,experts=128,inter=768,hidden=2048,top_k=8;tokens=2048,experts=128,inter=768,hidden=2048,top_k=8;tokens=8192,experts=128,inter=768,hidden=2048,top_k=8;tokens=64,experts=128,inter=768,hidden=2048,top_k=8,weight=float8_e4m3fn"
      tune triton_ssd_chunk_scan --shapes "tokens=16384,heads=128,head_dim=64,state=128,groups=1,seqs=1;tokens=16384,heads=128,head_dim=64,state=128,groups=1,seqs=8;tokens=2048,heads=128,head_dim=64,state=128,groups=1,seqs=8"
      tune triton_selective_state_update --shapes "seqs=1,heads=128,head_dim=64,state=128;seqs=64,heads=128,head_dim=64,state=128;seqs=256,heads=128,head_dim=64,state=128"
      ls -R "$OUT/configs" | head -30 ;;
    tune_ssd) tune triton_ssd_chunk_scan --shapes "tokens=16384,heads=128,head_dim=64,state=128,groups=1,seqs=1;tokens=16384,heads=128,head_dim=64,state=128,groups=1,seqs=8" ;;
    bench_tuned) TESSERA_TUNED_CONFIG_DIR="$OUT/configs" timeout 200 tessera bench kernels --op "$OPS" --out "$OUT/bench_moe_mamba.json" 2>&1 | grep --line-buffered -v "^{\|^ \|^}\|falls back" | tail -24 ;;
    bamba) TESSERA_TUNED_CONFIG_DIR="$OUT/configs" timeout 240 tessera bench throughput --preset bamba-9b --num-prompts 64 --input-len 256 --output-len 256 --compare hf --out "$OUT/throughput_bamba-9b.json" 2>&1 | grep -v "falls back\|falling back" | tail -4 ;;
    ssd) timeout 60 tessera conformance run --platform cuda --quick --ops ssd_chunk_scan --out "$OUT/conformance_ssd" 2>&1 | tail -2
         timeout 90 tessera bench kernels --op ssd_chunk_scan --out "$OUT/bench_ssd.json" 2>&1 | grep --line-buffered "ssd_chunk\|H128" | tail -4 ;;
    *) echo "unknown stage $stage" ;;
  esac
done

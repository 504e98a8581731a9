#!/usr/bin/env bash
# Issue 21 on a fresh H200, in one call of at most 10 minutes: every line reports the floor that holds for
# any schedule (floor.compute_s / floor.memory_s, floor.binding), the engine's startup warm-up (warmup_s)
# and the prefix-cache hit rate of its timed run. JSON under $OUT (or the first argument).
#   1. llama3-8b batch 1, 128 -> 256, first: the first request's TTFT on this fresh machine against the warm
#      TTFT (first_request.vs_warm_ttft; acceptance <= 2), TPOT against the weight-bytes floor (tpot_floor_share)
#   2. llama3-8b 64 x 256 -> 256 with transformers
#   3. llama3-8b 256 x 512 -> 512 (issue 21's "1.01" line)
#   4. qwen3-0.6b 64 x 256 -> 256 with transformers and the host profile (tessera.host_profile.us_per_step)
#   bash benchmarks/scripts/issue21_h200.sh [OUT]
set -uo pipefail
out=${1:-${OUT:-/tmp/out}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TESSERA_CACHE=${TESSERA_CACHE:-/tmp/tcache}
python3 -c "import tessera" 2>/dev/null || python3 -m pip install -q --no-deps --no-build-isolation \
    -e . -e plugins/cpu -e plugins/triton -e plugins/cuda >/dev/null 2>&1
bench() {  # NAME TIMEOUT ARGS...
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" python3 -m tessera bench "$@" --out "$out/$name.json" > "$out/$name.log" 2>&1
    echo "$name rc=$? ($((SECONDS - start)) s)"
    grep -vE "falls back|Warning|it/s\]" "$out/$name.log" | tail -2
    python3 - "$out/$name.json" <<'PY' 2>/dev/null
import json, sys
d = json.load(open(sys.argv[1]))
f, t = d["floor"], d["tessera"]
print(f"  floor {f['seconds']:.3f} s ({f['binding']}: compute {f['compute_s']:.3f} s, memory {f['memory_s']:.3f} s), "
      f"share {d['floor_share']:.2f}, warm-up {d['warmup_s']:.1f} s, prefix hit rate {t['prefix_cache']['hit_rate']:.2f}")
if "first_request" in d:
    fr = d["first_request"]
    print(f"  first request TTFT {fr['ttft_ms']:.1f} ms = {fr.get('vs_warm_ttft', float('nan')):.2f}x warm; "
          f"TPOT floor share {d.get('tpot_floor_share', float('nan')):.2f}")
if "host_profile" in t:
    print("  host us/step", {k: round(v) for k, v in t["host_profile"]["us_per_step"].items()})
PY
}
bench latency_llama3-8b_first 170 latency --preset llama3-8b --input-len 128 --output-len 256 --first-request --compare hf
bench throughput_llama3-8b_64x256 130 throughput --preset llama3-8b --num-prompts 64 --input-len 256 --output-len 256 --compare hf
bench throughput_llama3-8b_256x512 120 throughput --preset llama3-8b --num-prompts 256 --input-len 512 --output-len 512
bench throughput_qwen3-0.6b_64x256_host 110 throughput --preset qwen3-0.6b --num-prompts 64 --input-len 256 --output-len 256 \
    --profile-host --compare hf

#!/usr/bin/env bash
# On the device: the cost of logprobs (5) and penalties on decode throughput, llama3-8b preset (random bf16),
# 64 x 256 -> 256, `tessera bench throughput` with and without them, each twice in this call (the second
# pair is kept: warm caches), every run with the host profile (host us per step by phase; "wait" is device
# time the host did not hide). JSON under OUT; a table last.
#   bash benchmarks/scripts/sampling_cost_h200.sh OUT
set -uo pipefail
out=${1:-/tmp/out}
mkdir -p "$out"
for extra in "" "--logprobs 5 --penalties" "" "--logprobs 5 --penalties"; do
    name=sampling_cost_$([ -n "$extra" ] && echo logprobs_penalties || echo plain)
    python3 -m tessera bench throughput --preset llama3-8b --num-prompts 64 --input-len 256 --output-len 256 \
        $extra --profile-host --out "$out/$name.json" 2>&1 | grep -E "tok/s|rror" | tail -2
done
python3 - "$out" <<'PY'
import json, sys
rows = {}
for name in ("plain", "logprobs_penalties"):
    d = json.load(open(f"{sys.argv[1]}/sampling_cost_{name}.json"))["tessera"]
    rows[name] = d
    print(f"{name:20s} {d['output_tokens_per_s']:9.1f} tok/s  TPOT p50 {d['tpot_ms']['p50']:.2f} ms  host us/step",
          {k: round(v) for k, v in d["host_profile"]["us_per_step"].items()})
cost = 1 - rows["logprobs_penalties"]["output_tokens_per_s"] / rows["plain"]["output_tokens_per_s"]
print(f"cost of logprobs 5 + penalties: {100 * cost:.1f}% of decode throughput (goal <= 5%)")
PY

#!/usr/bin/env bash
# On the device: `tessera bench serve` against `tessera serve` at saturation, and `tessera bench
# throughput` on the same workload, in one call (llama3-8b preset, random weights); then the cost of
# logprobs and penalties on decode throughput (bench throughput with and without, same call).
#   bash benchmarks/scripts/serve_vs_offline.sh OUT
set -uo pipefail
out=${1:-/tmp/out}
mkdir -p "$out"
workload=(--num-prompts 1024 --random-range 100,1024 --seed 0)
python3 -m tessera bench throughput --preset llama3-8b "${workload[@]}" --max-num-seqs 256 \
    --out "$out/offline_llama3-8b_1024xU100-1024.json" 2>&1 | grep -E "tok/s|rror" | tail -3
dir=$(python3 -c "from tessera.models.presets import preset_dir; print(preset_dir('llama3-8b'))")
python3 -m tessera serve "$dir" --load-format random --max-num-seqs 256 --port 8011 --log-level warning \
    > /tmp/serve.log 2>&1 &
server=$!
for _ in $(seq 1 180); do curl -sf http://127.0.0.1:8011/health > /dev/null && break; sleep 1; done
python3 -m tessera bench serve --base-url http://127.0.0.1:8011 --model llama3-8b "${workload[@]}" \
    --max-concurrency 256 --out "$out/serve_llama3-8b_1024xU100-1024_c256.json" 2>&1 | tail -7
kill -INT $server; wait $server; tail -3 /tmp/serve.log
for extra in "" "--logprobs 5 --penalties" "" "--logprobs 5 --penalties"; do  # the second pair is kept (warm caches)
    python3 -m tessera bench throughput --preset llama3-8b --num-prompts 64 --input-len 256 --output-len 256 $extra \
        --out "$out/sampling_cost_$([ -n "$extra" ] && echo logprobs_penalties || echo plain).json" 2>&1 | grep -E "tok/s|rror" | tail -2
done

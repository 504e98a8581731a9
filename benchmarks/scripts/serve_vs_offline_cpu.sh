#!/usr/bin/env bash
# On the CPU: `tessera bench serve` against `tessera serve` vs `tessera bench throughput` on the same
# workload (128 prompts of 32 tokens, 512 greedy output tokens each, EOS ignored, 64 at a time), REPEATS
# times each, over tiny-llama's shapes with random weights and a word-level tokenizer (so the core
# detokenizes every token); then the engine core's host time per step spent building outputs
# (serve_output_cost.py core-step, batch 64, output 512, plain and with logprobs).
#   bash benchmarks/scripts/serve_vs_offline_cpu.sh OUT [LABEL] [REPEATS]
# To measure another build of tessera with the same script, put a folder holding `tessera` (a link to
# that build's core/) first on PYTHONPATH.
set -uo pipefail
out=${1:?usage: serve_vs_offline_cpu.sh OUT [LABEL] [REPEATS]}
label=${2:-run}
repeats=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
ckpt=$out/tiny-chat
[ -f "$ckpt/tokenizer.json" ] || python3 "$here/serve_output_cost.py" checkpoint "$ckpt"
n=128 input=32 output=512 seqs=64 port=${PORT:-8731}
for r in $(seq 1 "$repeats"); do
    python3 -m tessera bench throughput --model "$ckpt" --platform cpu --dtype float32 --num-prompts $n \
        --input-len $input --output-len $output --max-num-seqs $seqs --profile-host \
        --out "$out/${label}_offline_$r.json" 2>&1 | grep -E "tok/s|rror" | tail -2
done
python3 -m tessera serve "$ckpt" --platform cpu --dtype float32 --max-num-seqs $seqs --max-model-len 600 \
    --kv-cache-bytes $((256 << 20)) --port "$port" --log-level warning > "$out/${label}_serve.log" 2>&1 &
server=$!
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
for r in $(seq 1 "$repeats"); do
    python3 -m tessera bench serve --base-url "http://127.0.0.1:$port" --model tiny-chat --num-prompts $n \
        --random-input-len $input --output-len $output --max-concurrency $seqs \
        --out "$out/${label}_serve_$r.json" 2>&1 | grep -E "tok/s|ailed" | tail -2
done
kill -INT $server
wait $server
python3 "$here/serve_output_cost.py" core-step "$ckpt" --repeats "$repeats" --out "$out/${label}_core_step.json"
python3 "$here/serve_output_cost.py" core-step "$ckpt" --repeats "$repeats" --logprobs 2 \
    --out "$out/${label}_core_step_logprobs2.json"

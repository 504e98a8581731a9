#!/usr/bin/env bash
# On the CPU: `tessera bench throughput` and `tessera bench serve` against `tessera serve` on the same
# workload (64 prompts of 32 tokens, 512 greedy output tokens each, EOS ignored, all 64 at once), over
# tiny-llama's shapes with random weights and a word-level tokenizer (so the core detokenizes every
# token); then the engine core's host time per step spent building outputs (serve_output_cost.py
# core-step: batch 64, output 512, plain and with logprobs 2). One run of each, numbered RUN.
#   bash benchmarks/scripts/serve_vs_offline_cpu.sh OUT LABEL RUN
# Before / after figures: call it alternately for the two builds (RUN 1, 2, 3 each), so that both see the
# same load from the host's other jobs; another build of tessera is measured by putting a folder that
# holds `tessera` (a link to that build's core/) first on PYTHONPATH. OMP_NUM_THREADS defaults to 1: on a
# 2-core host shared with other jobs, two OpenMP threads stall at every parallel region whenever another
# process holds one core (steps 8x slower, varying from run to run), and the server's frontend and the
# load generator need the second core.
#   python3 benchmarks/scripts/serve_output_cost.py summarize OUT before after --out FILE
set -uo pipefail
out=${1:?usage: serve_vs_offline_cpu.sh OUT LABEL RUN}
label=${2:?LABEL}
r=${3:?RUN}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
ckpt=$out/tiny-chat
[ -f "$ckpt/tokenizer.json" ] || python3 "$here/serve_output_cost.py" checkpoint "$ckpt"
n=64 input=32 output=512 seqs=64 port=${PORT:-8731}
python3 -m tessera bench throughput --model "$ckpt" --platform cpu --dtype float32 --num-prompts $n \
    --input-len $input --output-len $output --max-num-seqs $seqs --profile-host \
    --out "$out/${label}_offline_$r.json" 2>&1 | grep -E "tok/s|rror" | tail -2
python3 -m tessera serve "$ckpt" --platform cpu --dtype float32 --max-num-seqs $seqs --max-model-len 600 \
    --kv-cache-bytes $((256 << 20)) --port "$port" --log-level warning > "$out/${label}_serve_$r.log" 2>&1 &
server=$!
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
# a short warm-up load first, so the timed one does not include the server's first steps
python3 -m tessera bench serve --base-url "http://127.0.0.1:$port" --model tiny-chat --num-prompts 8 \
    --random-input-len $input --output-len 8 --max-concurrency 8 > /dev/null 2>&1
python3 -m tessera bench serve --base-url "http://127.0.0.1:$port" --model tiny-chat --num-prompts $n \
    --random-input-len $input --output-len $output --max-concurrency $seqs \
    --out "$out/${label}_serve_$r.json" 2>&1 | grep -E "tok/s|ailed" | tail -2
kill -INT $server
wait $server
python3 "$here/serve_output_cost.py" core-step "$ckpt" --repeats 1 --out "$out/${label}_core_step_$r.json" \
    > /dev/null
python3 "$here/serve_output_cost.py" core-step "$ckpt" --repeats 1 --logprobs 2 \
    --out "$out/${label}_core_step_logprobs2_$r.json" > /dev/null

#!/usr/bin/env bash
# On the device: transformers' own `transformers serve` (continuous batching) under the load of
# serve_vs_offline.sh (input and output uniform in 100-1024, seed 0, --max-concurrency 256), driven by
# `tessera bench serve --backend openai`, cut at LIMIT_S seconds; then, unless HF_PEER_TESSERA=0,
# `tessera serve` under the same requests in the same call, for the ratio.
#   bash benchmarks/scripts/hf_serve_peer.sh OUT [LIMIT_S]        (after the standard install)
# The checkpoint is the preset's shape with random weights written by transformers (bf16, on the GPU),
# with a word-level tokenizer (id i is the word w<i>: the prompts are the workload's ids, exactly) and no
# EOS (transformers serve takes no ignore_eos), outside OUT. Overrides, for a CPU try of this script:
#   HF_PEER_PRESET (llama3-8b) HF_PEER_DEVICE (cuda) HF_PEER_DTYPE (bfloat16) HF_PEER_REQUESTS (256)
#   HF_PEER_RANGE (100,1024) HF_PEER_CONCURRENCY (256) HF_PEER_PORT (8021) HF_PEER_CKPT (a folder)
#   HF_PEER_SERVE_ARGS (more `transformers serve` flags, e.g. "--cb-max-memory-percent 0.8")
#   HF_PEER_TESSERA (1) HF_PEER_TESSERA_ARGS (more `tessera serve` flags) HF_PEER_LOAD_TIMEOUT (300)
set -uo pipefail
out=${1:-/tmp/out}
limit=${2:-150}
preset=${HF_PEER_PRESET:-llama3-8b}
device=${HF_PEER_DEVICE:-cuda}
dtype=${HF_PEER_DTYPE:-bfloat16}
requests=${HF_PEER_REQUESTS:-256}
range=${HF_PEER_RANGE:-100,1024}
conc=${HF_PEER_CONCURRENCY:-256}
port=${HF_PEER_PORT:-8021}
load_timeout=${HF_PEER_LOAD_TIMEOUT:-300}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
tmp=$(mktemp -d)  # logs other than transformers serve's stay here: what comes back from OUT is counted in files
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
tag="${preset}_${requests}xU${range/,/-}_c${conc}"
workload=(--num-prompts "$requests" --random-range "$range" --seed 0 --max-concurrency "$conc" --max-duration "$limit")

# the checkpoint: in RAM where /dev/shm has room (fast to write and to load), else /tmp; never under OUT
if [ -n "${HF_PEER_CKPT:-}" ]; then ckpt=$HF_PEER_CKPT
elif [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)" -gt 40000000 ] 2>/dev/null; then ckpt=/dev/shm/hf_peer_$preset
else ckpt=/tmp/hf_peer_$preset; fi
if [ ! -f "$ckpt/tokenizer.json" ]; then
    rm -rf "$ckpt"
    python3 "$here/hf_peer_checkpoint.py" "$preset" "$ckpt" --device "$device" --dtype "$dtype" 2>&1 | grep -v "Writing model shards" \
        || { echo "hf_serve_peer: writing the checkpoint failed"; exit 1; }
fi

# transformers serve, or the same Serve command through typer where the `transformers` CLI does not start
serve=(transformers serve)
if ! COLUMNS=400 transformers serve --help > "$tmp/help.txt" 2>&1; then
    serve=(python3 -c 'import typer; from transformers.cli.serve import Serve; typer.run(Serve)')
    COLUMNS=400 "${serve[@]}" --help > "$tmp/help.txt" 2>&1 \
        || { echo "hf_serve_peer: transformers serve is not available:"; tail -5 "$tmp/help.txt"; exit 1; }
fi
flags=()
# a flag exists where the help names it, or (a help cut short by a narrow terminal) Serve takes its parameter
python3 -c "import inspect; from transformers.cli.serve import Serve
print(' '.join('--' + n.replace('_', '-') for n in inspect.signature(Serve.__init__).parameters))" \
    >> "$tmp/help.txt" 2>/dev/null
has() { grep -q -- "$1\b" "$tmp/help.txt"; }
for pair in "--continuous-batching" "--device $device" "--dtype $dtype" "--host 127.0.0.1" "--port $port" "--log-level info"; do
    flag=${pair%% *}
    if has "$flag"; then read -ra words <<< "$pair"; flags+=("${words[@]}"); else echo "hf_serve_peer: this transformers has no $flag"; fi
done
has --continuous-batching || { echo "hf_serve_peer: no --continuous-batching: not the peer asked for"; exit 1; }
read -ra extra <<< "${HF_PEER_SERVE_ARGS:-}"
hf_version=$(python3 -c "import transformers; print(transformers.__version__)")
echo "transformers $hf_version: ${serve[*]} $ckpt ${flags[*]} ${extra[*]}"
"${serve[@]}" "$ckpt" "${flags[@]}" "${extra[@]}" > "$out/hf_serve.log" 2>&1 &
server=$!

up() {  # wait for /health on port $1 while pid $2 lives, at most $load_timeout s
    local t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$load_timeout" ]; do
        curl -sf "http://127.0.0.1:$1/health" > /dev/null && { echo "up after $((SECONDS - t0)) s"; return 0; }
        kill -0 "$2" 2>/dev/null || { echo "the server exited"; return 1; }
        sleep 1
    done
    echo "not up after $load_timeout s"; return 1
}
stop() {  # Ctrl-C to pid $1; transformers serve 5.17 stays up after uvicorn ends (its CB thread): then KILL
    kill -INT "$1" 2>/dev/null
    for _ in $(seq 30); do
        kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return 0; }
        grep -q "Finished server process" "$2" && sleep 2 && break
        sleep 1
    done
    kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null
}
warm() {  # one short request first: transformers serve sets continuous batching up (KV cache) on the first one
    local t0=$SECONDS
    curl -sf --max-time "$load_timeout" "http://127.0.0.1:$1/v1/completions" -H "content-type: application/json" -d "$2" \
        > /dev/null && echo "warm-up request done in $((SECONDS - t0)) s" || echo "warm-up request failed"
}
summary() {  # two lines from a bench serve JSON
    python3 - "$1" "$2" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
state = "complete" if r["complete"] else f"INCOMPLETE: {r['unfinished']} unfinished at the {r['duration_s']:.0f} s cut"
print(f"{sys.argv[2]}: output {r['output_tokens_per_s']:.1f} tok/s ({r['streamed_output_tokens_per_s']:.1f} "
      f"streamed), {r['completed']}/{r['num_requests']} completed, {r['failed']} failed, {state}, {r['duration_s']:.1f} s")
ms = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
print(f"{sys.argv[2]}: TTFT p50 {ms(r['ttft']['p50_ms'])} ms p99 {ms(r['ttft']['p99_ms'])} ms, TPOT p50 "
      f"{ms(r['tpot']['p50_ms'])} ms p99 {ms(r['tpot']['p99_ms'])} ms, output tokens {r['output_tokens']}")
EOF
}

hf_json="$out/serve_hf_$tag.json"
echo "transformers serve: $(up "$port" "$server")"
if curl -sf "http://127.0.0.1:$port/health" > /dev/null; then
    warm "$port" "{\"model\": \"$ckpt\", \"prompt\": \"w11 w12 w13 w14\", \"max_tokens\": 4, \"temperature\": 0}"
    timeout $((limit + 60)) python3 -m tessera bench serve --base-url "http://127.0.0.1:$port" --model "$ckpt" --backend openai \
        --tokenizer "$ckpt" "${workload[@]}" --out "$hf_json" > "$tmp/bench_hf.txt" 2>&1
    [ -f "$hf_json" ] || tail -5 "$tmp/bench_hf.txt"
    grep -E "^error" "$tmp/bench_hf.txt" | head -3
fi
stop "$server" "$out/hf_serve.log"
grep -E "Traceback|Error|error" "$out/hf_serve.log" | grep -v "GET /v1/models" | tail -5
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d['transformers_version']=sys.argv[2]; json.dump(d, open(sys.argv[1],'w'), indent=2)" \
    "$hf_json" "$hf_version" 2>/dev/null
[ -f "$hf_json" ] && summary "$hf_json" "transformers serve $hf_version" \
    || echo "transformers serve: no result (see $out/hf_serve.log)"

[ "${HF_PEER_TESSERA:-1}" = 0 ] && exit 0
# tessera serve on the preset (random weights, token-id prompts with ignore_eos), same requests, same cut
read -ra targs <<< "${HF_PEER_TESSERA_ARGS:-}"
dir=$(python3 -c "from tessera.models.presets import preset_dir; print(preset_dir('$preset'))")
python3 -m tessera serve "$dir" --load-format random --max-num-seqs "$conc" --port $((port + 1)) --log-level warning \
    --served-model-name "$preset" "${targs[@]}" > "$tmp/tessera_serve.log" 2>&1 &
tserver=$!
ts_json="$out/serve_tessera_$tag.json"
echo "tessera serve: $(up $((port + 1)) "$tserver")"
warm $((port + 1)) "{\"model\": \"$preset\", \"prompt\": [11, 12, 13, 14], \"max_tokens\": 4, \"ignore_eos\": true}"
timeout $((limit + 60)) python3 -m tessera bench serve --base-url "http://127.0.0.1:$((port + 1))" --model "$preset" \
    "${workload[@]}" --out "$ts_json" > "$tmp/bench_tessera.txt" 2>&1
stop "$tserver" "$tmp/tessera_serve.log"
grep -E "^error" "$tmp/bench_tessera.txt" | head -3
[ -f "$ts_json" ] && summary "$ts_json" "tessera serve" \
    || { echo "tessera serve: no result"; tail -5 "$tmp/bench_tessera.txt" "$tmp/tessera_serve.log"; }
[ -f "$hf_json" ] && [ -f "$ts_json" ] && python3 - "$hf_json" "$ts_json" <<'EOF'
import json, sys
hf, ts = (json.load(open(p)) for p in sys.argv[1:])
both = "" if hf["complete"] and ts["complete"] else " (a run was cut: streamed tok/s "
ratio = hf["output_tokens_per_s"] / ts["output_tokens_per_s"]
s = hf["streamed_output_tokens_per_s"] / ts["streamed_output_tokens_per_s"]
print(f"ratio transformers serve / tessera serve, output tok/s: {ratio:.3f}" + (both and f"{both}{s:.3f})"))
EOF

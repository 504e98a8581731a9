#!/usr/bin/env bash
# Two GPUs (nvidia-h200-x2): tensor parallelism on NCCL with decode graphs and the capturable collectives.
# Greedy tokens of TP 2 (spawned workers, then torchrun) must equal TP 1; the log must not say
# "decode graphs off" for the torchrun ranks (spawned workers do not log), and `kernels explain all_reduce --platform cuda` must select
# dist_capturable. Run from the repository root with the cuda plugin installed.
set -euo pipefail
MODEL=${MODEL:-/tmp/tp_llama}
python - "$MODEL" <<'PY'
import sys
from tessera.models.random_checkpoint import write_random_checkpoint
write_random_checkpoint("llama", sys.argv[1], seed=3, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
                        head_dim=128, vocab_size=32001, num_attention_heads=8, num_key_value_heads=2)
PY
cat > /tmp/tp_tokens.py <<'PY'
import json, logging, sys
from tessera import LLM, SamplingParams
logging.basicConfig(level=logging.INFO)
llm = LLM(sys.argv[1], dtype="bfloat16", tensor_parallel_size=int(sys.argv[2]))
out = llm.generate([[1, 5, 9, 13], [7, 8, 9], list(range(2, 40))], SamplingParams(max_tokens=32, temperature=0.0),
                   use_tqdm=False)
print("TOKENS", json.dumps([list(r.outputs[0].token_ids) for r in out]), flush=True)
PY
python -m tessera kernels explain all_reduce --platform cuda
python /tmp/tp_tokens.py "$MODEL" 1 2>&1 | tee /tmp/tp1.txt | grep -E "TOKENS|graphs"
python /tmp/tp_tokens.py "$MODEL" 2 2>&1 | tee /tmp/tp2.txt | grep -E "TOKENS|graphs"
python -m torch.distributed.run --nnodes 1 --nproc-per-node 2 --master-port 29555 /tmp/tp_tokens.py "$MODEL" 1 \
    2>&1 | tee /tmp/tprun.txt | grep -E "TOKENS|graphs"
for f in /tmp/tp2.txt /tmp/tprun.txt; do
    if diff <(grep TOKENS /tmp/tp1.txt) <(grep TOKENS "$f") >/dev/null; then echo "$f: same tokens as TP 1"
    else echo "$f: DIFFERENT tokens from TP 1 (bf16: compare a few first tokens)"; fi
done

"""Where a decode step makes the host wait for the device: every synchronizing torch call of a few engine runs,
by source line, plain and with logprobs 5 + penalties (the sampling-cost figure's features).

On a CUDA device it uses torch's sync debug mode (a warning for each call that synchronizes: ``.item()``,
``bool(tensor)``, a copy to pageable memory, ``nonzero`` ...), recorded with the Python stack that made it; an
explicit event wait (the engine reading a step's tokens) is not one of them. Elsewhere it says so and exits.

    python benchmarks/scripts/sync_probe.py OUT.json [--preset qwen3-0.6b] [--prompts 16] [--tokens 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

from tessera import LLM, SamplingParams
from tessera.models.presets import PRESETS

PENALTIES = {"presence_penalty": 0.5, "frequency_penalty": 0.5, "repetition_penalty": 1.1}
OWN = ("/core/", "/pluggable_layers/", "/plugins/", "/tessera")


def syncs_of(llm: LLM, prompts: list, params: SamplingParams) -> Counter:
    """Synchronizing calls of one ``generate``, keyed by the innermost project frame (file:line function)."""
    found: Counter = Counter()
    show = warnings.showwarning

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return show(message, category, filename, lineno, file, line)
        frames = [f for f in traceback.extract_stack()[:-1] if any(s in f.filename for s in OWN)]
        top = frames[-1] if frames else traceback.extract_stack()[-2]
        found[f"{Path(top.filename).name}:{top.lineno} {top.name}: {top.line}"] += 1

    warnings.showwarning = record
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            llm.generate(prompts, params)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        warnings.showwarning = show
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--preset", default="qwen3-0.6b")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--eager", action="store_true", help="no decode graphs (less to compile)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("sync_probe needs a CUDA device (torch's sync debug mode is CUDA's)")
    with tempfile.TemporaryDirectory() as tmp:
        config = {**PRESETS[args.preset], "torch_dtype": "bfloat16"}
        Path(tmp, "config.json").write_text(json.dumps(config))
        llm = LLM(tmp, load_format="random", dtype="bfloat16", enforce_eager=args.eager, max_num_seqs=64,
                  max_model_len=1024, gpu_memory_utilization=0.5)  # fmt: skip
    prompts = [{"prompt_token_ids": list(range(100 + i, 164 + i))} for i in range(args.prompts)]
    runs = {
        "plain": SamplingParams(temperature=0, max_tokens=args.tokens, ignore_eos=True),
        "logprobs_penalties": SamplingParams(
            temperature=0, max_tokens=args.tokens, ignore_eos=True, logprobs=5, **PENALTIES
        ),
    }
    for params in runs.values():  # warm-up: compiles outside the probe
        llm.generate(prompts[:2], params)
    result = {name: dict(syncs_of(llm, prompts, p).most_common()) for name, p in runs.items()}
    result["steps"] = args.tokens
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for name in runs:
        print(f"{name}: {sum(result[name].values())} synchronizing calls in {args.tokens} steps")
        for where, n in result[name].items():
            print(f"  {n:5d}  {where}")


if __name__ == "__main__":
    main()

"""What logprobs and penalties cost in decode throughput: `tessera bench throughput` with and without them, one process.

    python benchmarks/scripts/sampling_cost.py [--preset tiny-llama] [--platform cpu] [--out FILE]

Runs the same fixed workload three times (plain greedy, --logprobs 5, --logprobs 5 --penalties) after one
warm-up run and prints output tok/s and the cost of each against the plain run. On the H200 the lead runs
the same through `tessera bench throughput --preset llama3-8b [--logprobs 5] [--penalties]`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tessera.bench.e2e import fixed_workload, run_tessera, sampling_extras
from tessera.llm import LLM
from tessera.models.presets import preset_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny-llama")
    ap.add_argument("--platform", default=None)
    ap.add_argument("--num-prompts", type=int, default=32)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    llm = LLM(str(preset_dir(args.preset)), platform=args.platform, load_format="random",
              max_num_seqs=args.num_prompts, max_model_len=args.input_len + args.output_len + 8)  # fmt: skip
    workload = fixed_workload(
        args.num_prompts, args.input_len, args.output_len, llm.engine.spec.vocab_size, 0
    )
    variants = {"plain": sampling_extras(None, False), "logprobs5": sampling_extras(5, False),
                "logprobs5+penalties": sampling_extras(5, True)}  # fmt: skip
    run_tessera(llm, workload)  # warm-up
    best = {name: 0.0 for name in variants}
    for _ in range(args.repeats):  # interleaved, best of N: the host's other load affects all alike
        for name, extras in variants.items():
            best[name] = max(best[name], run_tessera(llm, workload, extras)["output_tokens_per_s"])
    result = {"preset": args.preset, "platform": llm.engine.platform.name, "workload": vars(args) | {"out": None},
              "output_tokens_per_s": best,
              "cost_vs_plain": {n: 1 - v / best["plain"] for n, v in best.items() if n != "plain"}}  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

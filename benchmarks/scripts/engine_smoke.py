"""Generate with every supported architecture (tiny random checkpoints saved by transformers) on
the selected platform, check greedy tokens against transformers on the same device, print timings.

    python benchmarks/scripts/engine_smoke.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tessera import LLM, SamplingParams  # noqa: E402
from tests.hf_checkpoints import write_tiny_checkpoint  # noqa: E402

ARCHS = ["llama", "qwen3", "qwen3_moe", "bamba"]
PROMPTS = [[3, 17, 42], list(range(5, 25)), [7] * 9 + [100, 101], list(range(60, 97))]


def run(arch: str, root: Path, platform: str | None) -> dict:
    import transformers

    # transformers before 5.24 normalizes Bamba's gated RMSNorm over all channels instead of per
    # group (Mamba2's definition, which Tessera follows); one group makes both agree.
    overrides = {"mamba_n_groups": 1} if arch == "bamba" else {}
    path = write_tiny_checkpoint(arch, root / arch, **overrides)
    start = time.perf_counter()
    llm = LLM(str(path), platform=platform)
    load_s = time.perf_counter() - start
    params = SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)
    llm.generate([{"prompt_token_ids": PROMPTS[0]}], SamplingParams(temperature=0, max_tokens=4))  # warm-up
    start = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p in PROMPTS], params)
    gen_s = time.perf_counter() - start
    device = llm.engine.runner.device
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    matches = 0
    for prompt, out in zip(PROMPTS, outs, strict=True):
        ref = hf.generate(torch.tensor([prompt], device=device), max_new_tokens=32, do_sample=False, eos_token_id=None,
                          pad_token_id=0)[0, len(prompt):].tolist()  # fmt: skip
        matches += out.outputs[0].token_ids == ref
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    ttft = [o.metrics.time_to_first_token * 1000 for o in outs]
    tpot = [(o.metrics.time_per_output_token or 0) * 1000 for o in outs]
    kernels = sorted({f"{c.op}:{c.kernel}" for c in llm.engine.runner.ctx.choices})
    return {
        "arch": arch, "platform": llm.engine.platform.name, "device": str(device),
        "device_name": llm.engine.platform.devices()[0].name, "dtype": str(llm.engine.dtype),
        "load_s": round(load_s, 3), "generate_s": round(gen_s, 3), "tokens": tokens,
        "tokens_per_s": round(tokens / gen_s, 1), "ttft_ms": [round(t, 2) for t in ttft], "tpot_ms": [round(t, 3) for t in tpot],
        "greedy_matches_transformers": f"{matches}/{len(PROMPTS)}", "graphs": llm.engine.runner.graphs is not None,
        "sample_text_ids": outs[1].outputs[0].token_ids[:12], "kernels": kernels,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--platform", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--archs", default=",".join(ARCHS))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            results.append(run(arch, Path(tmp), args.platform))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    print(
        f"{'arch':<10} {'platform':<8} {'device':<24} {'tok/s':>8} {'TTFT ms':>9} {'TPOT ms':>8} {'=HF':>5} graphs"
    )
    for r in results:
        print(f"{r['arch']:<10} {r['platform']:<8} {r['device_name'][:24]:<24} {r['tokens_per_s']:>8} "
              f"{max(r['ttft_ms']):>9.1f} {max(r['tpot_ms']):>8.2f} {r['greedy_matches_transformers']:>5} {r['graphs']}")  # fmt: skip


if __name__ == "__main__":
    main()

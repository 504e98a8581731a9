"""Where a batch-1 decode step of a Llama-3-8B-shaped model (random bf16 weights) spends its device time.

Profiles one generate call with the torch profiler, then reads the device
activities of the trace: per step, the summed time of each kernel family, the
share of the step the device was busy, and the gaps between activities.

    python benchmarks/scripts/profile_decode.py --out profile_decode.json
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

from tessera import LLM, SamplingParams
from tessera.models.presets import preset_dir

DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset")


def family(name: str) -> str:
    """Short kernel family: Triton kernels keep their function name, cuBLAS GEMVs and GEMMs collapse."""
    if "gemv" in name.lower():
        return "cublas gemv"
    if re.search(r"gemm|sm90_xmma|cutlass|nvjet", name, re.I):
        return "cublas gemm"
    if name.startswith("Memcpy") or name.startswith("Memset"):
        return name.split(" (")[0]
    return name[:60]


def device_activities(trace: dict) -> list[dict]:
    return sorted(
        (e for e in trace["traceEvents"] if e.get("cat") in DEVICE_CATS and "dur" in e), key=lambda e: e["ts"]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="llama3-8b")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    llm = LLM(str(preset_dir(args.preset)), load_format="random", dtype="bfloat16", max_num_seqs=8,
              max_model_len=2048, gpu_memory_utilization=0.85)  # fmt: skip
    prompt = {"prompt_token_ids": list(range(1000, 1128))}
    llm.generate([prompt], SamplingParams(temperature=0, max_tokens=16, ignore_eos=True))
    params = SamplingParams(temperature=0, max_tokens=args.tokens, ignore_eos=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        out = llm.generate([prompt], params)[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        acts = device_activities(json.loads(path.read_text()))
    steps = args.tokens
    span = (acts[-1]["ts"] + acts[-1]["dur"] - acts[0]["ts"]) / 1000.0
    busy = sum(a["dur"] for a in acts) / 1000.0
    by_family: dict[str, list[float]] = defaultdict(list)
    for a in acts:
        by_family[family(a["name"])].append(a["dur"])
    gaps = [b["ts"] - (a["ts"] + a["dur"]) for a, b in zip(acts, acts[1:], strict=False)]
    rows = sorted(
        ((k, len(v) / steps, sum(v) / steps / 1000.0) for k, v in by_family.items()), key=lambda r: -r[2]
    )
    summary = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "tpot_ms": out.metrics.time_per_output_token * 1000,
        "steps": steps,
        "device_span_ms_per_step": span / steps,
        "device_busy_ms_per_step": busy / steps,
        "activities_per_step": len(acts) / steps,
        "gap_us_total_per_step": sum(g for g in gaps if g > 0) / steps,
        "gaps_over_20us_per_step": sum(1 for g in gaps if g > 20) / steps,
        "families": [{"name": k, "per_step": c, "ms_per_step": ms} for k, c, ms in rows],
    }
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
    print(f"TPOT {summary['tpot_ms']:.3f} ms; device span {span / steps:.3f} ms/step, busy {busy / steps:.3f} ms/step, "
          f"{len(acts) / steps:.0f} activities/step, idle gaps {summary['gap_us_total_per_step']:.0f} us/step")  # fmt: skip
    for k, c, ms in rows[:25]:
        print(f"{ms * 1000:9.1f} us/step  x{c:6.1f}  {k}")


if __name__ == "__main__":
    main()

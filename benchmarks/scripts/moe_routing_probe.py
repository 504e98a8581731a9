"""MoE routing on the device: tiny Qwen3-MoE checkpoints (6 experts top-3 fp32, 8 top-2 bf16 hidden 256,
60 top-4 bf16) run one after another in one process, over a caching allocator filled with NaN (so any
read of memory no kernel wrote is NaN), eager with a finiteness hook on every module, with decode
graphs, and with moe_experts=reference (a bad id raises there instead of corrupting memory); greedy
tokens against transformers. Also the moe_route kernel itself on NaN and -inf router rows.

    python3 benchmarks/scripts/moe_routing_probe.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tessera import LLM, SamplingParams  # noqa: E402
from tests.hf_checkpoints import write_tiny_checkpoint  # noqa: E402

MODELS = {
    "e6_top3_fp32": (dict(num_experts=6, num_experts_per_tok=3), "float32"),
    "e8_top2_bf16_h256": (dict(num_experts=8, num_experts_per_tok=2, hidden_size=256), "bfloat16"),
    "e60_top4_bf16": (dict(num_experts=60, num_experts_per_tok=4), "bfloat16"),
}
PROMPTS = [[3, 17, 42], list(range(5, 25)), [7] * 9 + [100, 101], list(range(60, 97)), [9, 8, 7, 6, 5]]
MODES = {
    "eager": dict(enforce_eager=True),
    "graphs": dict(enforce_eager=False),
    "eager_ref_experts": dict(enforce_eager=True, kernel_overrides={"moe_experts": "reference"}),
    "graphs_ref_experts": dict(enforce_eager=False, kernel_overrides={"moe_experts": "reference"}),
}


def poison_allocator() -> None:
    """Fill the caching allocator's large and small pools with NaN, then free the tensors."""
    big = [torch.full((1 << 28,), float("nan"), device="cuda") for _ in range(4)]  # 4 x 1 GiB
    small = [torch.full((1 << 17,), float("nan"), device="cuda") for _ in range(2000)]  # 512 KiB each
    torch.cuda.synchronize()
    del big, small


def finiteness_hooks(model, found: list) -> list:
    def hook(module, args, out):
        if found:
            return
        tensors = out if isinstance(out, tuple | list) else (out,)
        for i, t in enumerate(tensors):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
                bad_rows = (~torch.isfinite(t.reshape(t.shape[0], -1))).any(dim=1).nonzero().flatten()
                found.append({"module": module._probe_name, "type": type(module).__name__, "output": i,
                              "shape": list(t.shape), "bad_rows": bad_rows[:16].tolist(),
                              "input_finite": all(torch.isfinite(a).all().item() for a in args
                                                  if isinstance(a, torch.Tensor) and a.is_floating_point())})  # fmt: skip
                return

    handles = []
    for name, module in model.named_modules():
        module._probe_name = name
        handles.append(module.register_forward_hook(hook))
    return handles


SCORED = list(range(3, 67))  # teacher-forced: 48-token prefill, then 16 one-token decodes
BUDGET = {"float32": 1e-3, "bfloat16": 5e-2}  # the conformance model level's budgets


def hf_greedy(path: Path, dtype: str, max_tokens: int) -> tuple[list[list[int]], torch.Tensor]:
    """transformers' greedy tokens in the run's dtype, and its float32 logits over SCORED."""
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).cuda().eval()
    outs = []
    for p in PROMPTS:
        ids = model.generate(torch.tensor([p], device="cuda"), max_new_tokens=max_tokens, do_sample=False,
                             eos_token_id=None, pad_token_id=0)[0, len(p):]  # fmt: skip
        outs.append(ids.tolist())
    model = model.float()
    with torch.no_grad():
        logits = model(torch.tensor([SCORED], device="cuda")).logits[0].float().cpu()
    del model
    return outs, logits


def run_mode(
    path: Path, dtype: str, mode: dict, hooks: bool, max_tokens: int, ref_logits: torch.Tensor
) -> dict:
    found: list = []
    try:
        llm = LLM(str(path), dtype=dtype, platform="cuda", max_model_len=128, **mode)
        handles = finiteness_hooks(llm.engine.runner.model, found) if hooks else []
        params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
        outs = llm.generate([{"prompt_token_ids": p} for p in PROMPTS], params, use_tqdm=False)
        torch.cuda.synchronize()
        for h in handles:
            h.remove()
        tokens = [o.outputs[0].token_ids for o in outs]
        from tessera.engine.scoring import teacher_forced_logits

        ours = teacher_forced_logits(llm.engine, SCORED, prefill_len=48)
        rel = float((ours - ref_logits).norm() / ref_logits.norm())
        del llm
        return {"tokens": tokens, "first_non_finite": found[0] if found else None, "error": None,
                "logits_rel_error": rel, "within_budget": rel <= BUDGET[dtype]}  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - the probe records what broke
        return {"tokens": None, "first_non_finite": found[0] if found else None,
                "error": f"{type(exc).__name__}: {exc}"[:600], "where": traceback.format_exc()[-1500:]}  # fmt: skip


def route_kernel_on_bad_rows() -> list[dict]:
    from tessera_triton.kernels.moe_route import moe_route

    rows = []
    for experts, top_k in ((6, 3), (8, 2), (60, 4), (64, 6), (128, 8)):
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            x = torch.randn(9, experts, device="cuda").to(dtype)
            x[1] = float("nan")
            x[2, experts // 2] = float("nan")
            x[3] = float("-inf")
            x[4, 0] = float("inf")
            weights, ids = moe_route(x, top_k)
            torch.cuda.synchronize()
            ok = bool(((ids >= 0) & (ids < experts)).all())
            distinct = all(len(set(r)) == top_k for r in ids.tolist())
            rows.append({"experts": experts, "top_k": top_k, "dtype": str(dtype), "ids_in_range": ok,
                         "distinct": distinct, "min": int(ids.min()), "max": int(ids.max())})  # fmt: skip
    return rows


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "route_kernel": route_kernel_on_bad_rows(), "models": {}}  # fmt: skip
    poison_allocator()
    tmp = Path(tempfile.mkdtemp())
    max_tokens = 24
    for name, (overrides, dtype) in MODELS.items():
        path = write_tiny_checkpoint("qwen3_moe", tmp / name, seed=1, **overrides)
        reference, ref_logits = hf_greedy(path, dtype, max_tokens)
        entry = {"dtype": dtype, "reference": reference, "modes": {}}
        for mode_name, mode in MODES.items():
            result = run_mode(path, dtype, mode, mode_name.startswith("eager"), max_tokens, ref_logits)
            if result["tokens"] is not None:
                pairs = [(a, b) for ours, ref in zip(result["tokens"], entry["reference"], strict=True)
                         for a, b in zip(ours, ref, strict=True)]  # fmt: skip
                result["agreement"] = sum(a == b for a, b in pairs) / len(pairs)
                result["equal"] = result["tokens"] == entry["reference"]
            entry["modes"][mode_name] = result
            poison_allocator()
        report["models"][name] = entry
    (out / "moe_routing_probe.json").write_text(json.dumps(report, indent=1))
    print(f"{'route kernel':<28} {'dtype':<16} in-range distinct")
    for r in report["route_kernel"]:
        print(
            f"E={r['experts']:<3} top-{r['top_k']:<20} {r['dtype']:<16} {r['ids_in_range']!s:<8} {r['distinct']}"
        )
    print(
        f"\n{'model':<20} {'mode':<20} {'equal':<6} {'agree':<6} {'logits err':<11} first non-finite / error"
    )
    for name, entry in report["models"].items():
        for mode_name, r in entry["modes"].items():
            nf = r["first_non_finite"]
            what = r["error"] or (f"{nf['module']} ({nf['type']}) rows {nf['bad_rows']}" if nf else "-")
            err = r.get("logits_rel_error")
            err = f"{err:.2e}" if err is not None else "-"
            print(
                f"{name:<20} {mode_name:<20} {r.get('equal', '-')!s:<6} {r.get('agreement', 0):<6.3f} {err:<11} {what}"
            )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/moe_probe")

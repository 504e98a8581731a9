"""One ``tessera bench throughput / latency`` run: the engine, the limits, tessera, the floor, the peer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class E2EOptions:
    model: str | None = None
    preset: str | None = None
    compare: str | None = None
    dtype: str = "auto"
    platform: str | None = None
    out: Path | None = None
    max_num_seqs: int = 256
    label: str = "throughput"
    extras: dict = field(default_factory=dict)
    #: measure the first request's TTFT (fresh prompt) before any bench warm-up
    first_request: bool = False
    #: host microseconds per step by phase (``tessera.bench.host_profile``)
    profile_host: bool = False
    #: worker processes (devices) the model is split over
    tensor_parallel_size: int = 1


def run_e2e(workload_fn, opts: E2EOptions, say=print) -> dict:
    from tessera.bench.e2e import copy_weights, first_request, hf_model_for, run_hf, run_tessera, summarize
    from tessera.bench.floor import floor_terms, model_cost
    from tessera.errors import ConfigError
    from tessera.llm import LLM
    from tessera.models.presets import preset_dir
    from tessera.models.spec import ModelSpec
    from tessera.pluggable_layers.measure import measure_limits

    if bool(opts.model) == bool(opts.preset):
        raise ConfigError("give exactly one of --model DIR and --preset NAME")
    if opts.tensor_parallel_size > 1 and opts.compare == "hf":
        raise ConfigError("--compare hf needs --tensor-parallel-size 1 (the weights live in the workers)")
    path, load_format = (
        (str(preset_dir(opts.preset)), "random") if opts.preset else (opts.model, "safetensors")
    )
    vocab = ModelSpec.from_dir(path).vocab_size
    workload = workload_fn(vocab)
    longest = max(len(p) + o for p, o in workload)
    llm = LLM(path, dtype=opts.dtype, platform=opts.platform, load_format=load_format, max_num_seqs=opts.max_num_seqs,
              max_model_len=longest + 8, gpu_memory_utilization=0.45 if opts.compare == "hf" else 0.9,
              tensor_parallel_size=opts.tensor_parallel_size)  # fmt: skip
    engine = llm.engine
    device = engine.runner.device
    result: dict = {"benchmark": opts.label, "model": opts.preset or opts.model, "platform": engine.platform.name,
                    "device": engine.platform.devices()[0].name, "dtype": str(engine.dtype).removeprefix("torch."),
                    "num_prompts": len(workload), "max_num_seqs": opts.max_num_seqs, "sampling": opts.extras,
                    "warmup_s": getattr(engine.runner, "warmup_s", None)}  # fmt: skip
    if opts.first_request:
        result["first_request"] = first_request(llm, len(workload[0][0]))
    hf = None
    if opts.compare == "hf":
        try:
            hf = hf_model_for(llm)
            copy_weights(hf, llm)
        except Exception as exc:  # noqa: BLE001 - the peer failing is reported, the bench goes on
            result["hf"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            hf = None
    limits = measure_limits(engine.platform, device)
    result["limits"] = {k: v for k, v in limits.items() if isinstance(v, float)}
    result["tessera"] = run_tessera(llm, workload, opts.extras, opts.profile_host)
    result["tensor_parallel_size"] = opts.tensor_parallel_size
    if (
        engine.runner.model is not None
    ):  # with tensor parallelism the weights (and their bytes) live in the workers
        floor = floor_terms(workload, model_cost(engine.runner), result["limits"], opts.max_num_seqs)
        result.update({"floor": floor, "floor_seconds": floor["seconds"],
                       "floor_share": floor["seconds"] / result["tessera"]["seconds"]})  # fmt: skip
        tpot = result["tessera"].get("tpot_ms")
        if tpot:
            result["tpot_floor_share"] = floor["step_ms"] / tpot["p50"]
    if opts.first_request and result["tessera"].get("ttft_ms"):
        result["first_request"]["vs_warm_ttft"] = (
            result["first_request"]["ttft_ms"] / result["tessera"]["ttft_ms"]["p50"]
        )
    if hf is not None:
        try:
            result["hf"] = run_hf(hf, workload, opts.max_num_seqs)
            result["speedup_vs_hf"] = (
                result["tessera"]["output_tokens_per_s"] / result["hf"]["output_tokens_per_s"]
            )
        except Exception as exc:  # noqa: BLE001 - out of memory and the like
            result["hf"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    say(summarize(result))
    if opts.out:
        Path(opts.out).write_text(json.dumps(result, indent=2, default=str))
        say(f"wrote {opts.out}")
    return result

"""Level (d): tiny random checkpoints of every supported architecture, run through the engine on the
platform under test and on the reference platform (``REFERENCE_PLATFORM``: tessera-cpu's cpu platform,
every op on its reference kernel, float32): logits over a 64-token prefill and 16 teacher-forced decode
steps, and the greedy-token agreement rate. Without the reference platform each model case is an error
that says so."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from tessera.conformance.report import CaseResult
from tessera.pluggable_layers.measure import error_figures
from tessera.pluggable_layers.ops import OPS

ARCHS = ("llama", "qwen3", "qwen3_moe", "bamba")
MODEL_BUDGET = {"float32": 1e-3, "float16": 2e-2, "bfloat16": 5e-2}
PREFILL, DECODES = 64, 16
#: the platform the models' logits are compared with (provided by tessera-cpu)
REFERENCE_PLATFORM = "cpu"


def model_case_id(arch: str, dtype: str, graphs: bool = False) -> str:
    return f"model/{arch}/{dtype}/prefill{PREFILL}_decode{DECODES}" + ("_graphs" if graphs else "")


def reference_problem() -> str | None:
    """Why the reference platform cannot run here, or None when it can."""
    from tessera.discovery import select_platform
    from tessera.errors import TesseraError

    try:
        select_platform(REFERENCE_PLATFORM)
    except TesseraError as exc:
        return (
            f"the model level compares with the {REFERENCE_PLATFORM!r} platform (reference kernels, float32), "
            f"which cannot be used: {exc}. Install tessera-cpu (and allow it in TESSERA_PLUGINS) to run it"
        )
    return None


def engine_logits(
    path: Path,
    platform: str,
    dtype: str,
    tokens: list[int],
    overrides: dict | None = None,
    graphs: bool = False,
) -> torch.Tensor:
    from tessera.engine.scoring import teacher_forced_logits
    from tessera.llm import LLM

    llm = LLM(str(path), dtype=dtype, platform=platform, kernel_overrides=overrides or {}, enforce_eager=not graphs,
              max_num_seqs=2, kv_cache_bytes=64 << 20, enable_prefix_caching=False)  # fmt: skip
    return teacher_forced_logits(llm.engine, tokens, PREFILL)


def check(platform, facts, caps, options, seed: int, progress=None) -> list[CaseResult]:
    from tessera.models.random_checkpoint import write_random_checkpoint

    dtype = next(d for d in ("bfloat16", "float16", "float32") if d in caps.dtypes)
    tokens = torch.randint(
        3, 250, (PREFILL + DECODES,), generator=torch.Generator().manual_seed(seed)
    ).tolist()
    missing = reference_problem()
    if missing:
        return [CaseResult(level="model", case_id=model_case_id(arch, dtype), op=arch, dtype=dtype, status="error",
                           message=missing) for arch in ARCHS]  # fmt: skip
    results = []
    # with graphs where the platform has them (decode steps replayed), and eager; the models run one
    # after another in this process, as a server that loads several would
    modes = (False, True) if caps.graphs else (False,)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (arch, graphs) in enumerate((a, g) for a in ARCHS for g in modes):
            if progress:
                progress(f"model {arch}", i, len(ARCHS) * len(modes))
            case_id = model_case_id(arch, dtype, graphs)
            start = time.perf_counter()
            try:
                path = write_random_checkpoint(arch, Path(tmp) / arch, seed=seed % 1000)
                got = engine_logits(path, platform.name, dtype, tokens, graphs=graphs)
                ref = engine_logits(
                    path, REFERENCE_PLATFORM, "float32", tokens, {op: "reference" for op in OPS}
                )
                figures = error_figures(got, ref.double())
                agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
                budget = MODEL_BUDGET[dtype]
                ok = figures.problem is None and figures.normalized <= budget
                results.append(CaseResult(level="model", case_id=case_id, op=arch, kernel="engine", dtype=dtype,
                                          case=f"prefill{PREFILL}_decode{DECODES}" + ("_graphs" if graphs else ""), status="pass" if ok else "fail",
                                          max_abs=figures.max_abs, max_rel=figures.max_rel, normalized=figures.normalized,
                                          budget=budget, message=figures.problem or f"greedy agreement {agree:.3f}",
                                          seconds=round(time.perf_counter() - start, 3), extra={"greedy_agreement": agree}))  # fmt: skip
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a kernel that exits fails its case, not the run
                results.append(CaseResult(level="model", case_id=case_id, op=arch, dtype=dtype, status="error",
                                          message=f"{type(exc).__name__}: {str(exc)[:300]}"))  # fmt: skip
    return results

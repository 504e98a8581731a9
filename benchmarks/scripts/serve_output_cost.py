"""What the engine core spends building each step's outputs for the frontend, and a servable tiny checkpoint.

    python benchmarks/scripts/serve_output_cost.py checkpoint DIR
    python benchmarks/scripts/serve_output_cost.py core-step DIR [--batch 64] [--output-len 512] [--logprobs N]
                                                   [--repeats 3] [--out FILE]
    python benchmarks/scripts/serve_output_cost.py summarize RESULTS_DIR LABEL... [--out FILE]

``checkpoint`` writes the tiny-llama preset's shapes with random weights (``write_random_checkpoint``) and a
word-level tokenizer.json over its whole vocabulary (token i is the word ``w<i>``, as the serve tests'
checkpoint), so ``tessera serve DIR`` detokenizes every token as a real checkpoint does.

``core-step`` runs the engine core's loop (``tessera.serve.engine_core.EngineCore``, as ``tessera serve``
runs it, with its output socket drained by a thread) over ``--batch`` requests of ``--output-len`` greedy
tokens (EOS ignored), under ``tessera.bench.host_profile.HostProfile``, and reports the median over
``--repeats`` runs of the host microseconds per step spent building outputs: ``detokenize`` (the engine
building each moved request's output), ``core_delta`` (the rest of the core's step around the engine's:
turning those outputs into wire deltas), ``encode_send`` (msgpack and the socket) and their sum, plus the
step's wall time, and the median per-step building time over the first 64 and the last 64 steps
(whether it grows with the output already produced). ``summarize`` gathers what ``serve_vs_offline_cpu.sh`` wrote under each LABEL into
medians (offline and served output tok/s, their ratio, TTFT / TPOT, the core-step figures). It only drives the core through its sockets' messages and methods that both the
cumulative and the delta engine have, so the same script measures either.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path


def write_checkpoint(target: Path) -> Path:
    import tokenizers

    from tessera.models.random_checkpoint import TINY_CONFIGS, write_random_checkpoint

    config = TINY_CONFIGS["llama"]
    write_random_checkpoint("llama", target, bos_token_id=1, eos_token_id=2)
    specials = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab = {f"w{i}": i for i in range(3, config["vocab_size"])} | specials
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(specials))
    tok.save(str(target / "tokenizer.json"))
    (target / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    )
    return target


class _Drain(threading.Thread):
    """Reads (and drops) what the core sends, as the frontend would."""

    def __init__(self, socket) -> None:
        super().__init__(daemon=True)
        self.socket, self.frames, self.bytes = socket, 0, 0

    def run(self) -> None:
        import zmq

        while True:
            try:
                frame = self.socket.recv(copy=False)
            except zmq.ZMQError:
                return
            self.frames += 1
            self.bytes += len(frame.buffer)


def one_run(engine, args, run: int) -> dict:
    import zmq

    from tessera.bench.host_profile import HostProfile
    from tessera.sampling_params import SamplingParams
    from tessera.serve import engine_core
    from tessera.serve.wire import AddRequest, Codec, CoreInput, to_wire_params

    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(f"inproc://out-{run}")
    push = context.socket(zmq.PUSH)
    push.connect(f"inproc://out-{run}")
    drain = _Drain(pull)
    drain.start()
    core = engine_core.EngineCore(engine, context, f"inproc://in-{run}", push)
    feed = context.socket(zmq.PUSH)
    feed.connect(f"inproc://in-{run}")
    extra = {"logprobs": args.logprobs} if args.logprobs is not None else {}
    params = to_wire_params(
        SamplingParams(temperature=0.0, max_tokens=args.output_len, ignore_eos=True, **extra)
    )
    codec = Codec(CoreInput)
    vocab = engine.spec.vocab_size
    for i in range(args.batch):
        prompt = [3 + (i * 7 + j * 13) % (vocab - 3) for j in range(args.input_len)]
        feed.send(codec.encode(AddRequest(f"r{run}-{i}", None, prompt, params, time.monotonic())))
    time.sleep(0.2)
    core._drain(block=False)
    timers = {"core_step": 0.0, "encode_send": 0.0}

    def timed(fn, key):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[key] += time.perf_counter() - start

        return wrapper

    core._step = timed(core._step, "core_step")
    core.send = timed(core.send, "encode_send")

    def building() -> float:  # seconds spent building outputs so far
        return prof.seconds["detokenize"] + timers["core_step"] - prof.seconds["step"] + timers["encode_send"]

    trace = []  # per step: microseconds spent building outputs
    with HostProfile(engine) as prof:
        start = time.perf_counter()
        while engine.has_unfinished():
            before = building()
            core._publish(core._step())
            trace.append(1e6 * (building() - before))
        wall = time.perf_counter() - start
    report = prof.report(wall)
    steps = max(report["steps"], 1)
    engine_step_us = 1e6 * prof.seconds["step"] / steps
    detok = report["us_per_step"]["detokenize"]
    core_delta = 1e6 * timers["core_step"] / steps - engine_step_us
    encode = 1e6 * timers["encode_send"] / steps
    feed.close(linger=0)
    core.close()
    push.close(linger=1000)
    time.sleep(0.2)
    pull.close(linger=0)
    context.term()
    return {"steps": report["steps"], "detokenize_us": detok, "core_delta_us": core_delta, "encode_send_us": encode,
            "output_building_us": detok + core_delta + encode, "step_us": report["step_us"],
            "first_64_steps_us": statistics.median(trace[2:66]), "last_64_steps_us": statistics.median(trace[-65:-1]),
            "bytes_sent": drain.bytes, "messages": drain.frames}  # fmt: skip


def core_step(args) -> dict:
    from tessera.engine.llm_engine import LLMEngine
    from tessera.llm import make_config

    engine = LLMEngine(make_config(model=str(args.model), dtype="float32", platform="cpu", max_num_seqs=args.batch,
                                   max_model_len=args.input_len + args.output_len + 8,
                                   kv_cache_bytes=256 << 20))  # fmt: skip
    runs = [one_run(engine, args, r) for r in range(args.repeats)]
    keys = [k for k in runs[0] if k.endswith("_us")]
    return {"model": str(args.model), "batch": args.batch, "input_len": args.input_len,
            "output_len": args.output_len, "logprobs": args.logprobs, "repeats": args.repeats,
            "median": {k: statistics.median(r[k] for r in runs) for k in keys}, "runs": runs}  # fmt: skip


def summarize(folder: Path, label: str) -> dict:
    def load(pattern: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(folder.glob(pattern))]

    def median(values) -> float | None:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    offline, served = load(f"{label}_offline_*.json"), load(f"{label}_serve_*.json")
    out: dict = {"runs": {"offline": len(offline), "serve": len(served)}}
    out["offline_output_tok_s"] = median(r["tessera"]["output_tokens_per_s"] for r in offline)
    out["offline_detokenize_us_per_step"] = median(
        r["tessera"].get("host_profile", {}).get("us_per_step", {}).get("detokenize") for r in offline
    )
    out["serve_output_tok_s"] = median(r.get("output_tokens_per_s") for r in served)
    if out["offline_output_tok_s"] and out["serve_output_tok_s"]:
        out["serve_vs_offline"] = out["serve_output_tok_s"] / out["offline_output_tok_s"]
    pairs = [
        (folder / f"{label}_offline_{r}.json", folder / f"{label}_serve_{r}.json") for r in range(1, 100)
    ]
    ratios = [json.loads(s.read_text())["output_tokens_per_s"] / json.loads(o.read_text())["tessera"]["output_tokens_per_s"]
              for o, s in pairs if o.is_file() and s.is_file()]  # fmt: skip
    out["serve_vs_offline_same_call"] = {"median": median(ratios), "runs": ratios}
    for key in ("ttft", "tpot", "itl"):
        for q in ("p50", "p99"):
            out[f"serve_{key}_{q}_ms"] = median((r.get(key) or {}).get(f"{q}_ms") for r in served)
    out["offline_tpot_p50_ms"] = median((r["tessera"].get("tpot_ms") or {}).get("p50") for r in offline)
    for name in ("core_step", "core_step_logprobs2"):
        runs = load(f"{label}_{name}_[0-9]*.json")
        if runs:
            keys = runs[0]["median"]
            out[name] = {k: median(r["median"][k] for r in runs) for k in keys} | {"runs": len(runs)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    ck = sub.add_parser("checkpoint")
    ck.add_argument("dir", type=Path)
    cs = sub.add_parser("core-step")
    cs.add_argument("model", type=Path)
    cs.add_argument("--batch", type=int, default=64)
    cs.add_argument("--input-len", type=int, default=32)
    cs.add_argument("--output-len", type=int, default=512)
    cs.add_argument("--logprobs", type=int, default=None)
    cs.add_argument("--repeats", type=int, default=3)
    cs.add_argument("--out", type=Path, default=None)
    sm = sub.add_parser("summarize")
    sm.add_argument("folder", type=Path)
    sm.add_argument("labels", nargs="+")
    sm.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.command == "checkpoint":
        print(write_checkpoint(args.dir))
        return
    if args.command == "summarize":
        result = {label: summarize(args.folder, label) for label in args.labels}
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2))
        return
    result = core_step(args)
    print(json.dumps(result["median"], indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

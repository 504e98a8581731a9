"""The engine's delta outputs (``LLMEngine.step(delta=True)``, what the engine core streams): each step they
equal the cumulative outputs less what was returned before, they add up to ``LLM.generate``'s outputs, and
what one step builds and sends does not grow with the output already produced."""

from __future__ import annotations

import dataclasses
import time

import pytest

from tessera.outputs import RequestOutput
from tessera.sampling_params import SamplingParams

from .conftest import ENGINE


@pytest.fixture(scope="module")
def engine(chat_checkpoint):
    from tessera.engine.llm_engine import LLMEngine
    from tessera.llm import make_config

    return LLMEngine(make_config(model=str(chat_checkpoint), **ENGINE))


def workload(reference) -> tuple[str, list[tuple[list[int], dict]]]:
    """n > 1, seeded sampling, logprobs, prompt logprobs, stop strings (one spanning two tokens, one kept in
    the output, one that never matches but holds text back), min_tokens, and a request aborted midway; and
    the text the stop string spanning two tokens leaves."""
    greedy = {"temperature": 0.0, "ignore_eos": True}
    words = (
        reference.generate([[30, 31]], {**greedy, "max_tokens": 24}, use_tqdm=False)[0]
        .outputs[0]
        .text.split()
    )
    text = " ".join(words)
    # the end of one token's text and the start of the next one's, at its first place in the text
    cut = next(i for i in range(3, len(words) - 1)
               if text.find(f"{words[i][1:]} {words[i + 1][:2]}") == len(" ".join(words[:i])) + 2)  # fmt: skip
    across = f"{words[cut][1:]} {words[cut + 1][:2]}"
    return " ".join(words[:cut]) + " w", [([9, 8, 7], {**greedy, "max_tokens": 16, "logprobs": 2, "prompt_logprobs": 1}),
            ([11, 12], {"temperature": 0.9, "seed": 7, "n": 3, "max_tokens": 14, "ignore_eos": True, "logprobs": 1}),
            ([30, 31], {**greedy, "max_tokens": 24, "stop": [across]}),
            ([30, 31], {**greedy, "max_tokens": 24, "stop": [words[4]], "include_stop_str_in_output": True, "n": 2}),
            ([40, 41], {**greedy, "max_tokens": 20, "stop": ["never there"], "min_tokens": 4, "prompt_logprobs": 0}),
            ([50, 51], {**greedy, "max_tokens": 60})]  # fmt: skip


ABORTED, ABORT_AT = "q5", 4


def sliced(out: RequestOutput, sent: dict) -> RequestOutput:
    """A cumulative output less what earlier outputs of the request held (how the engine core made deltas)."""
    completions = []
    for c in out.outputs:
        text_n, ids_n, lps_n = sent.get((out.request_id, c.index), (0, 0, 0))
        lps = c.logprobs
        sent[(out.request_id, c.index)] = (len(c.text), len(c.token_ids), len(lps) if lps else 0)
        completions.append(dataclasses.replace(c, text=c.text[text_n:], token_ids=c.token_ids[ids_n:],
                                               logprobs=lps[lps_n:] if lps is not None else None))  # fmt: skip
    prompt_logprobs = None
    first = (out.request_id, "prompt")
    if (
        out.prompt_logprobs is not None
        and first not in sent
        and (out.finished or any(c.token_ids for c in out.outputs))
    ):
        sent[first], prompt_logprobs = True, out.prompt_logprobs
    return dataclasses.replace(out, outputs=completions, prompt_logprobs=prompt_logprobs)


def view(out: RequestOutput) -> tuple:
    """What the engine core sends of an output (its clock readings aside)."""
    return (out.request_id, out.finished, out.error, out.num_cached_tokens, out.prompt_logprobs,
            [dataclasses.astuple(c) for c in out.outputs], out.metrics.num_output_tokens if out.finished else None)  # fmt: skip


def run(engine, work, delta: bool) -> list[list[tuple]]:
    for i, (prompt, params) in enumerate(work):
        engine.add_request(prompt, params, f"q{i}")
    steps, sent = [], {}
    while engine.has_unfinished():
        if len(steps) == ABORT_AT:
            engine.abort(ABORTED)
        outs = engine.step(delta=delta)
        steps.append([view(o if delta else sliced(o, sent)) for o in outs])
        for o in outs:
            if o.finished:
                engine.release(o.request_id)
    assert engine.requests == {}
    return steps


def test_deltas_are_the_cumulative_outputs_less_what_was_sent(engine, reference):
    cut_text, work = workload(reference)
    deltas = run(engine, work, delta=True)
    assert deltas == run(engine, work, delta=False)
    whole: dict[tuple, list] = {}
    for step in deltas:
        for rid, _, error, _, _, completions, _ in step:
            assert error is None
            for index, text, ids, reason, stop, cumulative, lps in completions:
                got = whole.setdefault((rid, index), ["", [], [], None, None, None])
                got[0] += text
                got[1] += ids
                got[2] += lps or []
                got[3:] = reason, stop, cumulative
    offline = reference.generate([p for p, _ in work[:-1]], [SamplingParams(**p) for _, p in work[:-1]],
                                 use_tqdm=False)  # fmt: skip
    for i, out in enumerate(offline):
        for c in out.outputs:
            text, ids, lps, reason, stop, cumulative = whole[(f"q{i}", c.index)]
            assert (text, ids, reason, stop) == (c.text, c.token_ids, c.finish_reason, c.stop_reason)
            assert [list(e) for e in lps] == [list(e) for e in c.logprobs or []]
            assert (cumulative is None) == (c.cumulative_logprob is None)
    stopped = [whole[("q2", 0)], whole[("q3", 0)], whole[("q3", 1)]]
    assert [s[3] for s in stopped] == ["stop"] * 3 and stopped[1][0].endswith(work[3][1]["stop"][0])
    assert stopped[0][0] == cut_text  # cut inside a token's text
    assert whole[(ABORTED, 0)][3] == "abort" and 0 < len(whole[(ABORTED, 0)][1]) < 60
    firsts = [next(s[4] for step in deltas for s in step if s[0] == rid and s[4]) for rid in ("q0", "q4")]
    assert [len(f) for f in firsts] == [3, 2]  # prompt logprobs, sent once
    assert sum(1 for step in deltas for s in step if s[4]) == 2


def test_what_a_core_step_builds_and_sends_does_not_grow_with_the_output(engine, monkeypatch):
    import zmq

    from tessera.engine import request_outputs
    from tessera.serve.engine_core import EngineCore
    from tessera.serve.wire import AddRequest, Codec, CoreInput, CoreOutput, OutputBatch, to_wire_params

    def cumulative(*args):
        raise AssertionError("the engine core built a cumulative output")

    monkeypatch.setattr(request_outputs, "request_output", cumulative)
    monkeypatch.setattr(request_outputs, "completion", cumulative)
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind("inproc://deltas-out")
    push = context.socket(zmq.PUSH)
    push.connect("inproc://deltas-out")
    core = EngineCore(engine, context, "inproc://deltas-in", push)
    feed = context.socket(zmq.PUSH)
    feed.connect("inproc://deltas-in")
    length = 110  # the context is 128 tokens
    params = SamplingParams(temperature=0.0, max_tokens=length, ignore_eos=True, logprobs=1, n=2)
    feed.send(
        Codec(CoreInput).encode(AddRequest("long", None, [5, 6, 7], to_wire_params(params), time.monotonic()))
    )
    try:
        until = time.monotonic() + 10
        while not core.active:
            assert time.monotonic() < until, "the request did not reach the core"
            core._drain(block=False)
        sizes, batches, decode = [], [], Codec(CoreOutput).decode
        while engine.has_unfinished():
            core._publish(core._step())
            while pull.poll(0):
                frame = pull.recv()
                message = decode(frame)
                if isinstance(message, OutputBatch) and message.outputs:
                    sizes.append(len(frame))
                    batches.append(message.outputs[0])
    finally:
        feed.close(linger=0)
        core.close()
        push.close(linger=0)
        pull.close(linger=0)
        context.term()
    assert [len(c.token_ids) for d in batches for c in d.outputs] == [1] * 2 * length
    assert all(len(c.logprobs) == 1 and len(c.text) <= len(" w210") for d in batches for c in d.outputs)
    assert [d.finished for d in batches] == [False] * (length - 1) + [True]
    middle = sizes[1:-1]  # the first may carry more (none here), the last carries the timing
    assert max(middle) <= min(middle) + 32, sizes  # a step late in the output sends what an early one does
    assert batches[-1].timing is not None and batches[-1].timing.num_output_tokens == length
    assert engine.requests == {} and engine.kv.pool.num_free == engine.kv.pool.num_blocks


def test_a_stop_string_before_min_tokens_is_not_found_later(engine, reference):
    """As in vLLM: text from before min_tokens is never searched again, offline or streamed (offline used
    to detokenize nothing until min_tokens and then found the earlier occurrence in all of the text)."""
    greedy = {"temperature": 0.0, "ignore_eos": True, "max_tokens": 12}
    words = reference.generate([[30, 31]], greedy, use_tqdm=False)[0].outputs[0].text.split()
    params = {**greedy, "stop": [words[1]], "min_tokens": 4}
    offline = reference.generate([[30, 31]], params, use_tqdm=False)[0].outputs[0]
    engine.add_request([30, 31], params, "late")
    text, ids = "", []
    while engine.has_unfinished():
        for out in engine.step(delta=True):
            text, ids = text + out.outputs[0].text, ids + out.outputs[0].token_ids
            if out.finished:
                engine.release(out.request_id)
    assert (offline.text, offline.token_ids) == (text, ids)
    assert offline.text.split()[:2] == words[:2]  # the early occurrence stays in the text
    later = words.index(words[1], 4) if words[1] in words[4:] else None
    assert offline.finish_reason == ("stop" if later is not None else "length")

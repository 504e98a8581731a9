"""A kernel that raises mid-generation fails exactly the requests of its step; the engine serves the rest.

The faults are real: the fixture kernel pack ``faulty_kernel`` (installed as a
distribution) registers counting kernels for the cpu platform, and a chosen call
raises. Every run is under a deadline, so an engine that hangs fails the test.
"""

from __future__ import annotations

import random

import pytest

from tessera import LLM, SamplingParams

CASES = [("llama", "sample"), ("llama", "rms_norm"), ("bamba", "gated_rms_norm")]


@pytest.fixture
def faulty(install_fixture):
    install_fixture("faulty_kernel")
    import fixture_faulty_kernel

    fixture_faulty_kernel.reset()
    yield fixture_faulty_kernel
    fixture_faulty_kernel.reset()


def workload(n: int, seed: int = 0):
    rng = random.Random(seed)
    prompts = [
        {"prompt_token_ids": [rng.randrange(3, 200) for _ in range(rng.randint(2, 20))]} for _ in range(n)
    ]
    params = [SamplingParams(temperature=0 if i % 2 else 0.8, seed=i, max_tokens=rng.randint(2, 12), ignore_eos=True)
              for i in range(n)]  # fmt: skip
    return prompts, params


def failing_steps(engine) -> list[set[str]]:
    """Spy on the runner: the request ids of every step whose execution raised."""
    failed: list[set[str]] = []
    execute = engine.runner.execute

    def spy(sched, prev):
        try:
            return execute(sched, prev)
        except Exception:
            failed.append({s.request.request_id for s in sched.scheduled})
            raise

    engine.runner.execute = spy
    return failed


def assert_all_free(engine) -> None:
    kv = engine.kv
    assert kv.pool.num_free == kv.pool.num_blocks, "KV blocks leaked"
    assert sorted(kv.free_slots) == list(range(engine.runner.plan.num_state_slots - 1)), "state slots leaked"
    assert not engine.scheduler.running and not engine.scheduler.waiting
    assert not engine.has_unfinished()


def tokens(outs) -> list[list[int]]:
    return [o.outputs[0].token_ids for o in outs]


@pytest.mark.parametrize("async_scheduling", [True, False], ids=["async", "sync"])
@pytest.mark.parametrize(("arch", "op"), CASES)
def test_a_kernel_raising_on_its_10th_call_fails_only_its_step(arch, op, async_scheduling, faulty, checkpoints,
                                                               deadline):  # fmt: skip
    llm = LLM(str(checkpoints(arch)), async_scheduling=async_scheduling, max_num_seqs=8, max_num_batched_tokens=48,
              block_size=4)  # fmt: skip
    prompts, params = workload(32)
    with deadline(120):
        clean = llm.generate(prompts, params)
    assert all(o.outputs[0].finish_reason == "length" for o in clean)
    failed_steps = failing_steps(llm.engine)
    faulty.reset(op, (10,))
    with deadline(120):
        outs = llm.generate(prompts, params)
    assert len(outs) == 32 and all(o.finished for o in outs)
    assert faulty.CALLS[op] > 10 and len(failed_steps) == 1
    errored = {o.request_id for o in outs if o.outputs[0].finish_reason == "error"}
    assert errored == failed_steps[0]
    assert 0 < len(errored) < 32
    for out, expected in zip(outs, clean, strict=True):
        if out.request_id in errored:
            assert f"InjectedFault: injected fault in {op}, call 10" in out.error
            assert out.outputs[0].token_ids == expected.outputs[0].token_ids[: len(out.outputs[0].token_ids)]
        else:
            assert out.error is None and out.outputs[0].token_ids == expected.outputs[0].token_ids
    assert_all_free(llm.engine)
    with deadline(120):
        again = llm.generate(prompts, params)
    assert tokens(again) == tokens(clean)
    assert_all_free(llm.engine)


def test_a_kernel_that_calls_sys_exit_fails_its_step_not_the_process(faulty, checkpoints, deadline):
    llm = LLM(str(checkpoints("llama")), max_num_seqs=8, max_num_batched_tokens=48, block_size=4)
    prompts, params = workload(8)
    faulty.reset("rms_norm", (10,), exits=True)
    with deadline(120):
        outs = llm.generate(prompts, params)
    errored = [o for o in outs if o.outputs[0].finish_reason == "error"]
    assert errored and all(
        "sys.exit(7) was called during the step (by a kernel or plugin)" in o.error for o in errored
    )
    assert_all_free(llm.engine)
    faulty.reset()
    with deadline(120):
        assert all(o.error is None for o in llm.generate(prompts, params))


def test_a_failed_prefill_leaves_no_block_in_the_prefix_cache(faulty, checkpoints, deadline):
    """The fault strikes before any KV is written: the blocks that step registered must not be reused."""
    path = str(checkpoints("llama"))
    prompt = [{"prompt_token_ids": list(range(10, 30))}]
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    expected = LLM(path, block_size=4).generate(prompt, params)[0].outputs[0].token_ids
    llm = LLM(path, block_size=4)
    faulty.reset("rms_norm", (1,))
    with deadline(60):
        assert llm.generate(prompt, params)[0].outputs[0].finish_reason == "error"
        faulty.reset()
        hits = llm.engine.stats["prefix_hits"]
        assert llm.generate(prompt, params)[0].outputs[0].token_ids == expected
    assert llm.engine.stats["prefix_hits"] == hits, (
        "a block the failed step never wrote was served from the cache"
    )
    assert_all_free(llm.engine)


def test_async_a_step_whose_tokens_cannot_be_read_fails_with_its_consumers(
    checkpoints, deadline, monkeypatch
):
    """Reading step N's tokens raises (a device fault surfacing at synchronization): step N's requests and
    their rows of the step in flight end with an error; the rest are served."""
    from tessera.engine import model_runner

    llm = LLM(str(checkpoints("llama")), max_num_seqs=8, max_num_batched_tokens=48, block_size=4)
    prompts, params = workload(16, seed=3)
    clean = llm.generate(prompts, params)
    reads = {"n": 0}
    real = model_runner.StepHandle.tokens

    def tokens_failing_once(self):
        reads["n"] += 1
        if reads["n"] == 6:
            raise RuntimeError("device fault at synchronize")
        return real(self)

    monkeypatch.setattr(model_runner.StepHandle, "tokens", tokens_failing_once)
    with deadline(120):
        outs = llm.generate(prompts, params)
    errored = [o for o in outs if o.outputs[0].finish_reason == "error"]
    assert errored and all("RuntimeError: device fault at synchronize" in o.error for o in errored)
    for out, expected in zip(outs, clean, strict=True):
        if out.error is None:
            assert out.outputs[0].token_ids == expected.outputs[0].token_ids
    assert_all_free(llm.engine)
    assert tokens(llm.generate(prompts, params)) == tokens(clean)


def test_a_finish_that_frees_nothing_ends_in_errors_not_a_hang(checkpoints, deadline, monkeypatch):
    """A planted Scheduler.finish that keeps the blocks: generate must come back (error outputs), not spin."""
    from tessera.engine.request import Status
    from tessera.engine.scheduler import Scheduler

    def finish_without_free(self, request):
        self.running.remove(request)
        request.status = Status.FINISHED

    monkeypatch.setattr(Scheduler, "finish", finish_without_free)
    llm = LLM(str(checkpoints("llama")), num_kv_blocks=12, block_size=4, max_num_seqs=4)
    prompts, params = workload(12, seed=5)
    with deadline(60):
        outs = llm.generate(prompts, params)
    stuck = [o for o in outs if o.outputs[0].finish_reason == "error"]
    assert stuck and all("blocks or state slots were leaked" in o.error for o in stuck)
    assert len(outs) == 12 and not llm.engine.has_unfinished()

"""The engine-core process: a startup failure is a clear error, a killed core fails every request at once
(and /health says so), an idle core does not spin, and every wire message survives the round trip."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import openai
import pytest

from tessera.outputs import Logprob
from tessera.sampling_params import SamplingParams

from .conftest import ENGINE, MODEL_NAME, Server


def test_startup_failures_are_one_clear_line(chat_checkpoint, tmp_path):
    from tessera.llm import make_config
    from tessera.serve.core_client import CoreClient, EngineStartupError

    missing = tmp_path / "no-such-model"
    with pytest.raises(EngineStartupError) as info:
        CoreClient.start_process(make_config(model=str(missing), platform="cpu"), timeout=120)
    assert str(missing) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(EngineStartupError) as info:
        CoreClient.start_process(
            make_config(model=str(chat_checkpoint), platform="no-such-platform"), timeout=120
        )
    assert "no-such-platform" in str(info.value) and "\n" not in str(info.value)


def test_a_core_that_is_not_ready_in_time_is_stopped(chat_checkpoint):
    from tessera.llm import make_config
    from tessera.serve.core_client import CoreClient, EngineStartupError

    with pytest.raises(EngineStartupError, match="not ready within 0.01 s.*--engine-start-timeout"):
        CoreClient.start_process(make_config(model=str(chat_checkpoint), **ENGINE), timeout=0.01)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def doomed(chat_checkpoint):
    """A server whose engine core the test kills."""
    s = Server(chat_checkpoint)
    yield s
    s.stop()


def test_killed_core_fails_requests_and_health(doomed, deadline):
    pid = doomed.core.info.pid
    assert pid != os.getpid() and doomed.core.process.pid == pid
    if Path(f"/proc/{pid}/stat").exists():  # idle, the core blocks on its socket: no busy spin
        before = cpu_seconds(pid)
        time.sleep(1.0)
        assert cpu_seconds(pid) - before < 0.3

    async def run():
        async with doomed.async_client(timeout=30) as client:
            long = dict(model=MODEL_NAME, prompt=[5, 6, 7], max_tokens=120, temperature=0,
                        extra_body={"ignore_eos": True})  # fmt: skip
            stream = await client.completions.create(stream=True, **long)
            await stream.__anext__()  # it runs
            whole = asyncio.ensure_future(client.completions.create(**long))
            await asyncio.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(openai.APIError) as streamed:
                async for _ in stream:
                    pass
            with pytest.raises(openai.APIStatusError) as collected:
                await whole
            return time.monotonic() - started, streamed.value, collected.value

    with deadline(60):
        took, streamed, collected = asyncio.run(run())
    assert took < 5
    assert "killed by signal 9" in streamed.message
    assert collected.status_code == 503 and "killed by signal 9" in collected.message
    health = httpx.get(doomed.base_url + "/health", timeout=5)
    assert health.status_code == 503 and "killed by signal 9" in health.json()["error"]["message"]
    with pytest.raises(openai.APIStatusError) as later:
        doomed.client(timeout=10).completions.create(model=MODEL_NAME, prompt="w1", max_tokens=2)
    assert later.value.status_code == 503 and later.value.body["code"] == "engine_dead"


def test_every_wire_message_round_trips():
    from tessera.serve import wire

    params = SamplingParams(n=2, temperature=0.7, top_p=0.9, top_k=5, min_p=0.1, presence_penalty=0.5,
                            frequency_penalty=-0.5, repetition_penalty=1.2, logit_bias={3: 2.5, 7: -1.0}, seed=11,
                            stop=("w9", "w10"), stop_token_ids=(4, 5), include_stop_str_in_output=True,
                            ignore_eos=True, max_tokens=33, min_tokens=2, logprobs=3, prompt_logprobs=1,
                            skip_special_tokens=False, spaces_between_special_tokens=False)  # fmt: skip
    assert set(params.model_fields_set) == set(
        SamplingParams.model_fields
    )  # every field differs from its default
    assert wire.from_wire_params(wire.to_wire_params(params)) == params
    entry = {7: Logprob(-0.25, 1, "w7"), 9: Logprob(-1.5, 2, None)}
    delta = wire.RequestDelta("r-1", [wire.CompletionDelta(0, "w7", [7], None, None, -0.25, [entry]),
                                      wire.CompletionDelta(1, "", [], "stop", "w9", None, None),
                                      wire.CompletionDelta(2, "x", [4], "stop", 4, None, [])],
                              True, "ValueError: boom", 16, [None, entry], wire.Timing(1.0, 1.5, 2.0, None, 3))  # fmt: skip
    stats = wire.EngineStats(running=3, waiting=2, num_blocks=100, free_blocks=40, prefix_queries=9, prefix_hits=4,
                             preemptions=1, requests=5, num_added=7)  # fmt: skip
    inputs = [wire.AddRequest("r-1", "w1 w2", [1, 2], wire.to_wire_params(params), 12.5),
              wire.AddRequest("r-2", None, [3], wire.to_wire_params(SamplingParams()), 13.0),
              wire.AbortRequests(["r-1", "r-2"]), wire.Shutdown(2.5)]  # fmt: skip
    outputs = [wire.Ready("/models/m", "cpu", "float32", 128, 211, 64, 16, [2, 5], {"temperature": 0.6, "top_k": 20},
                          1234),
               wire.StartupFailed("ModelLoadError", "no config.json in /x", True),
               wire.OutputBatch([delta, wire.RequestDelta("r-2", [], False)], stats), wire.OutputBatch([], stats),
               wire.CoreFailed("RuntimeError: lost"), wire.Stopped()]  # fmt: skip
    frontend, core = wire.Codec(wire.CoreOutput), wire.Codec(wire.CoreInput)
    for message in inputs:
        assert core.decode(frontend.encode(message)) == message
    for message in outputs:
        assert frontend.decode(core.encode(message)) == message
    decoded = frontend.decode(core.encode(outputs[2])).outputs[0]
    assert decoded.outputs[0].logprobs[0][9] == Logprob(-1.5, 2, None) and decoded.prompt_logprobs[0] is None
    assert stats.as_dict()["blocks_in_use"] == 60
    assert core.encode(wire.Stopped()) == b"\x91\xa7stopped"  # msgpack: an array holding the tag


def test_deltas_not_taken_yet_merge_into_one():
    from tessera.serve import wire
    from tessera.serve.streams import OutputSlot

    slot = OutputSlot("w1", [1], arrival_time=5.0)
    lp = [{7: Logprob(-0.5, 1, "w7")}]
    steps = [wire.RequestDelta("r", [wire.CompletionDelta(0, "w7", [7], None, None, -0.5, lp),
                                     wire.CompletionDelta(1, "w8", [8], None, None, -0.1, lp)], False),
             wire.RequestDelta("r", [wire.CompletionDelta(0, " w9", [9], "length", None, -1.0, lp),
                                     wire.CompletionDelta(1, "", [], None, None, -0.1, [])], False),
             wire.RequestDelta("r", [wire.CompletionDelta(0, "", [], "length", None, -1.0, []),
                                     wire.CompletionDelta(1, " w4", [4], "stop", 4, -0.3, lp)], True,
                               timing=wire.Timing(5.0, 5.5, 6.0, 7.0, 3))]  # fmt: skip

    async def run():
        first_two = [slot.output(d) for d in steps[:2]]
        for out in first_two:
            slot.put(out)  # the reader is behind: one delta waits for it
        merged = await slot.get()
        waiter = asyncio.ensure_future(slot.get())
        await asyncio.sleep(0)
        assert not waiter.done()  # nothing pending: the reader waits
        slot.put(slot.output(steps[2]))
        last = await waiter
        slot.fail(RuntimeError("gone"))
        with pytest.raises(RuntimeError, match="gone"):
            await slot.get()
        return merged, last

    merged, last = asyncio.run(run())
    a, b = merged.outputs
    assert (a.text, a.token_ids, a.finish_reason, a.logprobs) == ("w7 w9", [7, 9], "length", lp + lp)
    assert (b.text, b.token_ids, b.finish_reason, b.logprobs) == ("w8", [8], None, lp)
    assert not merged.finished and merged.prompt_token_ids == [1] and merged.metrics.arrival_time == 5.0
    assert last.finished and last.outputs[1].stop_reason == 4 and last.metrics.finished_time == 7.0
    assert slot.num_tokens == 4


def test_a_core_whose_frontend_dies_exits(chat_checkpoint, deadline, tmp_path):
    import subprocess
    import sys

    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to watch the orphaned process")
    script = (f"import os; from tessera.llm import make_config; from tessera.serve.core_client import CoreClient; "
              f"c = CoreClient.start_process(make_config(model={str(chat_checkpoint)!r}, **{ENGINE!r}), timeout=120); "
              "print(c.info.pid, flush=True); os._exit(0)")  # fmt: skip
    with deadline(150):
        out, err = tmp_path / "out", tmp_path / "err"  # files, not pipes: the orphan holds them open
        with out.open("w") as stdout, err.open("w") as stderr:
            done = subprocess.run([sys.executable, "-c", script], stdout=stdout, stderr=stderr, timeout=140)
        assert done.returncode == 0, err.read_text()
        pid = int(out.read_text().split()[-1])
        until = time.monotonic() + 15
        while time.monotonic() < until:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                break
            if state in ("Z", "X"):  # exited; only its parent (now init) has not reaped it yet
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the engine core {pid} outlived its frontend by 15 s")

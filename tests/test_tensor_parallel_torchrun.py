"""Ranks started by torchrun (or by hand with its variables), on one host as two single-process "nodes":
rank 0 drives, rank 1 serves its steps over torch.distributed; greedy tokens equal one rank; the CLI under
``torch.distributed.run`` prints what one process prints; a rank killed mid-generation makes the driver
raise WorkerError naming it within 30 s. Every process is started with a timeout and killed at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from tessera import LLM
from tessera.distributed import free_port
from tessera.engine.tp_launch import launched_rank
from tessera.models.random_checkpoint import write_random_checkpoint
from tests.test_tensor_parallel import MODELS, SMALL, outputs

DRIVE = """
import json, os, sys
from tessera import LLM
from tests.test_tensor_parallel import outputs
llm = LLM(sys.argv[1], dtype="float32", tensor_parallel_size=int(os.environ["WORLD_SIZE"]))
print("RESULT " + json.dumps(outputs(llm)), flush=True)
"""

KILLED = """
import json, os, sys, time
from tessera import LLM, SamplingParams
from tessera.errors import WorkerError
llm = LLM(sys.argv[1], dtype="float32", tensor_parallel_size=int(os.environ["WORLD_SIZE"]))
engine = llm.engine
engine.add_request([1, 2, 3, 4], SamplingParams(max_tokens=100000, temperature=0.0, ignore_eos=True))
for _ in range(3):
    engine.step()
print("STEPPING", flush=True)
try:
    while engine.has_unfinished():
        engine.step()
except WorkerError as exc:  # the clock is the system's monotonic one: the test compares it with its own
    print("RESULT " + json.dumps({"rank": exc.rank, "error": str(exc), "at": time.monotonic()}), flush=True)
"""


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
            "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "PYTHONPATH": root}  # fmt: skip


def start_ranks(script: str, *args: str, world: int = 2) -> list[subprocess.Popen]:
    port = free_port()
    return [subprocess.Popen([sys.executable, "-c", script, *args], env=rank_env(r, world, port), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(world)]  # fmt: skip


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def result_line(text: str) -> dict | list:
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the driver printed no result:\n{text[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def test_launched_rank_reads_the_torchrun_variables():
    assert launched_rank({}) is None and launched_rank({"WORLD_SIZE": "1", "RANK": "0"}) is None
    where = launched_rank(rank_env(1, 2, 1234))
    assert (where.rank, where.world_size, where.master_port, where.master_addr) == (1, 2, 1234, "127.0.0.1")


ONE_ENGINE_PER_RANK = """
import json, sys
from tessera import LLM
from tests.test_tensor_parallel import outputs
llm = LLM(sys.argv[1], dtype="float32")  # tensor_parallel_size left at 1: a data-parallel script
print("RESULT " + json.dumps([llm.engine.runner.__class__.__name__, outputs(llm)[0]]), flush=True)
"""


def test_a_program_under_torchrun_that_asks_for_no_parallelism_keeps_its_own_engine(tmp_path):
    path = str(write_random_checkpoint("llama", tmp_path, seed=3, **{**SMALL, **MODELS["llama"]}))
    one = outputs(LLM(path, dtype="float32"))
    # rank 1 of 2 alone: had it been taken over, it would wait for a driver and never print
    done = subprocess.run([sys.executable, "-c", ONE_ENGINE_PER_RANK, path], env=rank_env(1, 2, free_port()),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    runner, tokens = result_line(done.stdout)
    assert runner == "ModelRunner" and tokens == one[0]


def test_two_launched_ranks_equal_one_rank(tmp_path):
    path = str(write_random_checkpoint("llama", tmp_path, seed=3, **{**SMALL, **MODELS["llama"]}))
    one = outputs(LLM(path, dtype="float32"))
    procs = start_ranks(DRIVE, path)
    try:
        text = procs[0].communicate(timeout=60)[0]
        assert procs[1].wait(timeout=20) == 0 and procs[0].returncode == 0, text[-3000:]
    finally:
        stop(procs)
    tokens, logprobs = result_line(text)
    assert tokens == one[0]  # token for token
    for a_req, b_req in zip(one[1], logprobs, strict=True):
        for a, b in zip(a_req, b_req, strict=True):
            assert sorted(a) == sorted(int(t) for t in b) and all(abs(a[t] - b[str(t)]) < 1e-4 for t in a)


def test_generate_under_torchrun_prints_what_one_process_prints(tmp_path, fresh_discovery):
    from tessera.cli import app

    path = write_random_checkpoint(
        "llama", tmp_path, seed=3, **{**SMALL, **MODELS["llama"], "vocab_size": 300}
    )
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "TesseraByteTokenizer"}))
    args = ["generate", "--model", str(path), "--dtype", "float32", "-n", "12", "-p", "Tessera runs on"]
    one = CliRunner().invoke(app, args)
    assert one.exit_code == 0, one.output
    text_line = [line for line in one.output.splitlines() if line.startswith("Tessera runs on")]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
              "--master-port", str(free_port()), "-m", "tessera", *args, "--verbose"]  # fmt: skip
    done = subprocess.run(launch, text=True, capture_output=True, timeout=90)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert text_line and text_line[0] in done.stdout.splitlines()
    assert "rank 0 of 2 (torchrun)" in done.stdout + done.stderr  # it did run on two ranks


def test_a_killed_launched_rank_raises_naming_it(tmp_path):
    path = str(write_random_checkpoint("llama", tmp_path, seed=3, **{**SMALL, **MODELS["llama"]}))
    procs = start_ranks(KILLED, path)
    try:
        line = procs[0].stdout.readline()
        deadline = time.monotonic() + 60
        while "STEPPING" not in line and time.monotonic() < deadline and procs[0].poll() is None:
            line = procs[0].stdout.readline()
        assert "STEPPING" in line, "the driver did not start stepping"
        killed = time.monotonic()
        os.kill(procs[1].pid, signal.SIGKILL)
        text = procs[0].communicate(timeout=45)[0]
    finally:
        stop(procs)
    result = result_line(text)
    assert result["rank"] == 1 and "rank 1" in result["error"] and result["at"] - killed < 30
    assert procs[0].returncode == 0


def test_a_bad_torchrun_variable_is_a_clear_error():
    from tessera.errors import ConfigError

    with pytest.raises(ConfigError, match="bad torchrun environment"):
        launched_rank({"WORLD_SIZE": "2", "RANK": "x"})

"""``tessera serve`` as a user starts it, loaded by ``tessera bench serve``, stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from .conftest import MODEL_NAME


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_then_bench_serve(chat_checkpoint, tmp_path):
    port = free_port()
    env = {**os.environ, "TESSERA_PLATFORM": "cpu"}
    cmd = [sys.executable, "-m", "tessera.cli", "serve", str(chat_checkpoint), "--port", str(port), "--dtype", "float32",
           "--max-model-len", "128", "--kv-cache-bytes", str(16 << 20), "--served-model-name", MODEL_NAME,
           "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        until = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < until, "tessera serve did not come up"
            time.sleep(0.2)
        out = tmp_path / "bench.json"
        bench = subprocess.run([sys.executable, "-m", "tessera.cli", "bench", "serve", "--base-url", base, "--model",
                                MODEL_NAME, "--num-prompts", "12", "--max-concurrency", "4", "--random-range", "2,9",
                                "--out", str(out)], capture_output=True, text=True, timeout=120)  # fmt: skip
        assert bench.returncode == 0, bench.stdout + bench.stderr
        result = json.loads(out.read_text())
        assert result["completed"] == 12 and result["failed"] == 0
        from tessera.bench.serve_bench import workload

        assert result["output_tokens"] == sum(
            n for _, n in workload(12, (2, 9), (2, 9), 211, 0)
        )  # ignore_eos
        assert result["ttft"]["p50_ms"] > 0 and result["tpot"]["p99_ms"] >= result["tpot"]["p50_ms"]
        assert result["output_tokens_per_s"] > 0 and "request throughput" in bench.stdout
    finally:
        server.send_signal(signal.SIGINT)
        try:
            code = server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert code == 0, server.stdout.read()


def test_serve_refuses_a_missing_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tessera.cli", "serve", str(tmp_path / "nope")], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "error" in proc.stderr

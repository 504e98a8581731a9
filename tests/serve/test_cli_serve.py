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


def start_server(model, port: int, *options: str) -> subprocess.Popen:
    env = {**os.environ, "TESSERA_PLATFORM": "cpu"}
    cmd = [sys.executable, "-m", "tessera.cli", "serve", str(model), "--port", str(port), "--dtype", "float32",
           "--served-model-name", MODEL_NAME, "--log-level", "warning", *options]  # fmt: skip
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    until = time.monotonic() + 90
    while True:
        assert server.poll() is None, server.stdout.read()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        assert time.monotonic() < until, "tessera serve did not come up"
        time.sleep(0.2)


def test_ctrl_c_drains_then_ends_every_request_in_openai_shape(tmp_path):
    """Ctrl-C with requests generating: the server stops within --drain-timeout (plus the engine's stop), and every
    request still running gets a proper end, finish_reason "abort" (a stream's last chunk before ``data: [DONE]``,
    a plain request's answer with what it generated so far); none is cut off mid-stream."""
    import threading

    from ..hf_checkpoints import write_tiny_checkpoint
    from .conftest import add_tokenizer

    model = write_tiny_checkpoint("llama", tmp_path / "long", max_position_embeddings=4096)
    add_tokenizer(model)
    port = free_port()
    server = start_server(model, port, "--max-model-len", "4096", "--kv-cache-bytes", str(96 << 20),
                          "--drain-timeout", "1")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    body = {"model": MODEL_NAME, "prompt": [5, 6, 7], "max_tokens": 4000, "ignore_eos": True}
    streams: list[list[str]] = [[] for _ in range(3)]
    plain: list[httpx.Response] = []

    def stream(lines: list[str]) -> None:
        with httpx.stream(
            "POST", base + "/v1/completions", json={**body, "stream": True}, timeout=60
        ) as response:
            for line in response.iter_lines():
                if line:
                    lines.append(line)

    threads = [threading.Thread(target=stream, args=(lines,)) for lines in streams]
    threads.append(threading.Thread(target=lambda: plain.append(httpx.post(base + "/v1/completions", json=body,
                                                                           timeout=60))))  # fmt: skip
    try:
        for t in threads:
            t.start()
        until = time.monotonic() + 30
        while not all(len(lines) >= 3 for lines in streams):
            assert time.monotonic() < until, "the streams did not start"
            time.sleep(0.02)
    finally:
        server.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        try:
            code = server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    took = time.monotonic() - t0
    for t in threads:
        t.join(30)
    log = server.stdout.read()
    assert code == 0, log
    assert took < 1 + 8, f"{took:.1f} s from Ctrl-C to exit with --drain-timeout 1"
    assert "Traceback" not in log and "timeout graceful shutdown exceeded" not in log, log
    for lines in streams:  # the engine aborted them at the drain timeout: their last chunk says so
        assert lines[-1] == "data: [DONE]", lines[-3:]
        assert json.loads(lines[-2].removeprefix("data: "))["choices"][0]["finish_reason"] == "abort", lines[
            -2
        ]
    assert plain[0].status_code == 200, plain[0].text
    choice = plain[0].json()["choices"][0]
    assert choice["finish_reason"] == "abort" and choice["text"], choice


def test_serve_refuses_a_missing_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tessera.cli", "serve", str(tmp_path / "nope")], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "error" in proc.stderr

"""``tessera bench serve`` against the real server: text prompts with OpenAI's fields alone, and a cut run."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from tessera.bench.serve_bench import request_body, run_load, workload
from tessera.cli import app

from .conftest import MODEL_NAME

runner = CliRunner()


def test_openai_backend_sends_the_ids_as_text_and_openai_fields_alone(server, chat_checkpoint, tmp_path):
    assert "ignore_eos" not in request_body("m", "w12 w13", 4)
    assert request_body("m", [12, 13], 4)["ignore_eos"] is True
    out = tmp_path / "bench.json"
    args = ["bench", "serve", "--base-url", server.base_url, "--model", MODEL_NAME, "--backend", "openai", "--tokenizer",
            str(chat_checkpoint), "--num-prompts", "8", "--max-concurrency", "4", "--random-range", "2,9", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    requests = workload(8, (2, 9), (2, 9), 211, 0)  # the tokenizer's vocabulary, as the server's
    assert data["completed"] == 8 and data["failed"] == 0 and data["complete"] and data["backend"] == "openai"
    # the server counted each text prompt as the workload's ids (else the request fails), and no ignore_eos was
    # sent: an EOS may end a request early, and its output is what the server reported
    assert data["input_tokens"] == sum(len(ids) for ids, _ in requests)
    assert 8 <= data["output_tokens"] <= sum(n for _, n in requests)


def test_text_that_does_not_round_trip_fails_each_request(server):
    requests = workload(3, (4, 4), (2, 2), 211, 0)
    texts = ["w12 w13"] * 3  # two tokens where the workload has four
    result = asyncio.run(run_load(server.base_url, MODEL_NAME, requests, float("inf"), None, texts=texts))
    assert result["failed"] == 3 and result["completed"] == 0 and not result["complete"]
    assert "do not round-trip" in result["errors"][0] and "counts 2 prompt tokens" in result["errors"][0]


def test_max_duration_cuts_the_run_and_says_it_is_incomplete(server):
    requests = workload(64, (8, 8), (100, 100), 211, 0)
    result = asyncio.run(run_load(server.base_url, MODEL_NAME, requests, float("inf"), 2, max_duration=0.3))
    assert not result["complete"] and result["failed"] == 0 and result["unfinished"] > 0
    assert result["completed"] + result["unfinished"] == 64 and result["max_duration_s"] == 0.3
    assert result["duration_s"] < 5
    assert result["streamed_output_tokens_per_s"] >= result["output_tokens_per_s"]
    # the server goes on serving after the cut: the cut requests were aborted, not left to hang
    again = asyncio.run(run_load(server.base_url, MODEL_NAME, requests[:2], float("inf"), None))
    assert again["completed"] == 2 and again["output_tokens"] == 200


def test_openai_backend_needs_a_tokenizer(server, tmp_path):
    base = ["bench", "serve", "--base-url", server.base_url, "--model", MODEL_NAME]
    result = runner.invoke(app, [*base, "--backend", "openai"])
    assert result.exit_code == 2 and "pass --tokenizer" in result.output
    result = runner.invoke(app, [*base, "--backend", "openai", "--tokenizer", str(tmp_path)])
    assert result.exit_code == 2 and "no tokenizer.json" in result.output
    result = runner.invoke(app, [*base, "--backend", "grpc"])
    assert result.exit_code == 2 and "tessera or openai" in result.output

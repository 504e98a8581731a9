"""The conformance suite on the cpu platform: a full quick run, subtly wrong kernels, the triton pack
under the interpreter, certificates in `platform list`, and the pytest plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.conformance.report import SUITE_VERSION
from tessera.conformance.runner import RunOptions, run
from tessera.discovery import select_platform

runner = CliRunner()


def test_cpu_quick_run_writes_report_and_certificate(home, fresh_discovery):
    result = runner.invoke(app, ["conformance", "run", "--platform", "cpu", "--quick", "--seed", "7"])
    assert result.exit_code == 0, result.output
    # A log (no terminal) gets one plain progress line per op and level, and the fallbacks of the
    # layer and model levels as one summary line, not a warning each.
    progress = [
        line.split("] ", 1)[1].split()[0] for line in result.output.splitlines() if line.startswith("[")
    ]
    assert progress[0] == "rms_norm" and {"moe_route", "sample", "model"} <= set(progress)
    assert "falls back to the reference kernel" not in result.output
    assert "the layer and model levels ran the reference kernel for" in result.output
    cert_path = home / "certificates" / "cpu"
    certs = list(cert_path.glob("*.json"))
    assert len(certs) == 1
    cert = json.loads(certs[0].read_text())
    assert (
        cert["verdict"] == "conformant"
        and cert["passed"] == cert["total"] > 60
        and cert["scope"] == "complete"
    )
    report = json.loads(open(cert["report_path"]).read())
    levels = {r["level"] for r in report["results"]}
    assert levels == {"platform", "op", "pair", "layer", "model"}
    assert report["seed"] == 7 and (home / "certificates" / "cpu").is_dir()
    ops = {r["op"] for r in report["results"] if r["level"] == "op"}
    from tessera.pluggable_layers.ops import OPS

    assert ops == set(OPS)
    assert cert["world_size"] == report["world_size"] == 2  # the collectives ran on two ranks (gloo)
    assert cert["untested_ops"] == report["untested_ops"] == {}  # every op ran at least one case
    listing = json.loads(runner.invoke(app, ["platform", "list", "--json"]).stdout)
    cpu = next(p for p in listing["plugins"] if p["plugin"] == "cpu")["platforms"][0]
    assert (
        cpu["certificates"][0]["passed"] == cert["passed"]
        and cpu["certificates"][0]["suite_version"] == SUITE_VERSION
    )
    assert "certificate:" in runner.invoke(app, ["platform", "list"]).output
    shown = runner.invoke(app, ["conformance", "show"])
    assert shown.exit_code == 0 and "passed" in shown.output


def test_subtly_wrong_kernels_fail_with_figures(home, install_fixture):
    install_fixture("wrong_kernels")
    report = run(RunOptions(platform="cpu", ops=["rms_norm", "paged_attention", "silu_and_mul"], seed=3))
    by_kernel = {}
    for r in report.results:
        by_kernel.setdefault(r.kernel, []).append(r)
    # Every dtype the platform reports here is tested, and at each the missing eps shows on one case.
    reported = select_platform("cpu").capabilities().dtypes
    assert {r.dtype for r in report.results if r.level == "op"} == set(reported)
    no_eps = [r for r in by_kernel["wrong_rms_norm_no_eps"] if r.status == "fail"]
    for dtype in reported:
        failed = [r for r in no_eps if r.dtype == dtype]
        assert [r.case for r in failed] == ["t5_h256_small_values_eps_1e-6"], dtype
        assert failed[0].normalized > failed[0].budget and failed[0].max_abs > 0
        assert "over budget" in failed[0].message
    skipping = [r for r in by_kernel["wrong_attention_skips_last_block"] if r.status == "fail"]
    assert {r.case for r in skipping} >= {"decode_block_edges_gqa4", "mixed_prefill_decode_gqa8"}
    assert all(r.op == "paged_attention" and r.normalized > r.budget for r in skipping)
    unwritten = by_kernel["wrong_silu_unwritten"]
    assert {r.status for r in unwritten} == {"fail", "xfail"}
    assert all("NaN or never written" in r.message for r in unwritten)
    xpass = [r for r in report.results if r.status == "xpass"]
    assert [r.case_id for r in xpass] == ["rms_norm/wrong_rms_norm_no_eps/float32/t1_h64"]
    # the pack's claim on the cpu plugin's kernel does not touch that kernel's results
    assert {r.status for r in by_kernel["cpu_torch_rms_norm"]} == {"pass"}
    assert not report.passed


@pytest.mark.cpu_dtypes_independent  # it names its dtypes (float32, float16)
def test_triton_pack_certified_under_the_interpreter(home, fresh_discovery, monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TESSERA_CPU_TRITON", "1")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    # the zoo's real head, state and expert sizes take minutes in the interpreter: its shapes run in the
    # cpu quick test; here every other case (fixed, drawn from the shape spaces, adversarial)
    origins = ["fixed", "generated", "adversarial"]
    report = run(
        RunOptions(
            platform="cpu", kernels=["triton_*"], dtypes=["float32", "float16"], seed=11, origins=origins
        )
    )
    ops = [r for r in report.results if r.level == "op"]
    assert {r.kernel for r in ops} == {"triton_rms_norm", "triton_add_rms_norm", "triton_silu_and_mul",
                                      "triton_rotary_embedding", "triton_kv_cache_write", "triton_paged_attention",
                                      "triton_kv_cache_write_hnd", "triton_paged_attention_hnd",
                                      "triton_sample", "triton_moe_route", "triton_moe_experts", "triton_causal_conv1d",
                                      "triton_causal_conv1d_update", "triton_ssd_chunk_scan",
                                      "triton_selective_state_update", "triton_gated_rms_norm", "triton_linear_wna16",
                                      "triton_moe_experts_wna16"}  # fmt: skip
    assert {r.dtype for r in ops} == {"float32", "float16"}
    assert all(r.status == "pass" for r in ops), [(r.case_id, r.message) for r in ops if r.status != "pass"]
    pairs = [r for r in report.results if r.level == "pair"]
    assert {"kv_pair/triton_kv_cache_write+triton_paged_attention/float16/nhd",
            "kv_pair/triton_kv_cache_write_hnd+triton_paged_attention_hnd/float16/hnd"} <= {r.case_id for r in pairs}  # fmt: skip
    assert all(r.status == "pass" for r in pairs), [
        (r.case_id, r.message) for r in pairs if r.status != "pass"
    ]
    assert report.scope == "kernels=triton_*; dtypes=float32,float16; origins=fixed,generated,adversarial"
    drawn = report.drawn["moe_route"]
    assert drawn["adversarial"] >= 20 and drawn["generated"] >= 1 and "zoo" not in drawn


def test_pytest_plugin(home):
    env = dict(os.environ, TESSERA_HOME=str(home))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", "tessera.conformance",
           "--tessera-platform", "cpu", "--tessera-ops", "rms_norm", "--tessera-seed", "13"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=str(home))
    assert done.returncode == 0, done.stdout[-2000:]
    assert " passed" in done.stdout


def test_perf_mode_reports_limits_and_bandwidth(home, fresh_discovery):
    report = run(RunOptions(platform="cpu", ops=["silu_and_mul"], perf=True, seed=5, levels=("op",)))
    assert report.limits["copy_GBps"] > 0 and report.limits["matmul_TFLOPs"] > 0
    timed = [r for r in report.results if r.status == "pass"]
    assert timed and all(r.extra["median_ms"] > 0 and r.extra["share_of_copy_bandwidth"] > 0 for r in timed)


def test_unsafe_kernels_fail_their_postconditions(home, install_fixture):
    """A kernel writing one element past its output fails the guard check; a router returning the
    expert count as the id of NaN rows passes every finite case (as the suite before postconditions
    ran them) and fails the adversarial ones."""
    install_fixture("unsafe_kernels")
    report = run(RunOptions(platform="cpu", ops=["rms_norm", "moe_route", "kv_cache_write"], kernels=["unsafe_*"], seed=5,
                            dtypes=["float32"]))  # fmt: skip
    past = [r for r in report.results if r.kernel == "unsafe_rms_norm_writes_past_out"]
    assert past and all(r.status == "fail" and "wrote outside the tensor" in r.message for r in past)
    assert all("0 element(s) of the guard before it, 1 after it changed" in r.message for r in past)
    route = [r for r in report.results if r.kernel == "unsafe_moe_route_nan_id"]
    finite = [r for r in route if "nan" not in r.case.lower()]
    assert len(finite) >= 10 and all(r.status == "pass" for r in finite), [
        r.message for r in finite if r.status != "pass"
    ]
    nan_cases = [r for r in route if "nan_rows" in r.case or "nan_entries" in r.case]
    assert nan_cases and all(r.status == "fail" for r in nan_cases)
    assert all("outside [0, " in r.message for r in nan_cases)
    # the cases the suite had before (fixed, finite logits) all pass this kernel
    fixed = {"t1_e8_k2_softmax", "t67_e128_k8_softmax", "t13_e16_k4_sigmoid_raw"}
    assert {r.case for r in route if r.status == "pass"} >= fixed
    wraps = {r.case: r for r in report.results if r.kernel == "unsafe_kv_cache_write_wraps_padding"}
    padded = wraps["t67_h2_d40_b16_padding"]
    assert padded.status == "fail" and "changed that the reference leaves as they were" in padded.message
    assert wraps["t1_h8_d128_b16"].status == "pass"  # no padding token: nothing to wrap
    assert report.drawn["moe_route"]["adversarial"] >= 20 and report.drawn["moe_route"]["generated"] >= 1
    assert not report.passed


def test_sanitize_runs_each_case_under_the_platforms_memory_checker(home, install_fixture):
    install_fixture("checked_platform")
    cases = ["t1_e8_k2_softmax", "t13_e16_k4_sigmoid_raw"]
    report = run(RunOptions(platform="checked_cpu", ops=["moe_route"], cases=cases, seed=3, sanitize=True))
    by_case = {r.case: r for r in report.results if r.level == "op"}
    assert set(by_case) == set(cases) and report.sanitized
    clean, planted = by_case["t1_e8_k2_softmax"], by_case["t13_e16_k4_sigmoid_raw"]
    assert clean.status == "pass" and clean.extra["sanitized"] == "clean" and clean.normalized is not None
    assert planted.status == "fail" and "sanitizer (exit 99)" in planted.message
    assert "Invalid __global__ write of size 4 bytes" in planted.message


def test_sanitize_without_a_memory_checker_is_a_clear_error(home, fresh_discovery):
    result = runner.invoke(
        app, ["conformance", "run", "--platform", "cpu", "--ops", "rms_norm", "--sanitize"]
    )
    assert result.exit_code != 0
    assert (
        "--sanitize needs a memory checker" in result.output and "offers no memory checker" in result.output
    )


def test_cuda_offers_compute_sanitizer_when_installed(tmp_path, monkeypatch):
    from tessera_cuda.platform import CudaPlatform

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "no-toolkit"))
    missing = CudaPlatform().memory_checker()
    assert missing.command is None and "compute-sanitizer is not on PATH" in missing.reason
    tool = tmp_path / "compute-sanitizer"
    tool.write_text('#!/bin/sh\nexec "$@"\n')
    tool.chmod(0o755)
    found = CudaPlatform().memory_checker()
    assert found.command[:3] == [str(tool), "--tool", "memcheck"] and "--error-exitcode" in found.command


def test_shape_spaces_draw_edges_and_replay_by_seed():
    from tessera.conformance import space
    from tessera.conformance.cases import SPACES, all_cases
    from tessera.pluggable_layers.ops import OPS

    spaces = [s for m in SPACES for s in m.space()]
    assert {s.op for s in spaces} == set(OPS)  # every op declares its shape space
    experts = space.Int(1, 512, boundaries=(64, 128))
    assert {1, 2, 3, 63, 65, 127, 129, 509, 512} <= set(experts.edges(512))
    names = lambda seed: [c.case_id for c in all_cases(False, seed) if c.origin == "generated"]  # noqa: E731
    first = names(21)
    assert first == names(21) and first != names(22)  # --seed replays the draws
    drawn = [i for i in first if not i.endswith("_hnd")]  # the KV ops' cases come once more head-major
    per_op = {op: sum(i.startswith(op + "/gen_") for i in drawn) for op in OPS}
    assert all(n == space.DRAWS["quick"] for n in per_op.values()), per_op
    assert sorted(i for i in first if i.endswith("_hnd")) == sorted(
        f"{i}_hnd" for i in drawn if i.split("/")[0] in ("kv_cache_write", "paged_attention")
    )
    route = [c for c in all_cases(False, 21) if c.op == "moe_route" and c.origin == "generated"]
    assert all(c.params and f"e{c.params['e']}_" in c.name for c in route)
    zoo = {c.name for c in all_cases(False, None) if c.origin == "zoo"}
    assert {
        "zoo_Qwen1_5_MoE_A2_7B_route",
        "zoo_Mixtral_8x7B_route",
        "zoo_DeepSeek_V2_Lite_route_nan_rows",
    } <= zoo


KILLING_CHECKER = """
import subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)
for line in child.stdout:
    sys.stdout.write(line)
    sys.stdout.flush()
    if line.startswith("TESSERA-CASE-START ") and "t13_e16_k4_sigmoid_raw" in line:
        child.kill()
        print("Segmentation fault (core dumped)")
        sys.exit(139)
sys.exit(child.wait())
"""


def test_sanitized_process_that_dies_fails_its_case_and_the_rest_go_on(home, install_fixture, tmp_path):
    from tessera.conformance import sanitize

    install_fixture("checked_platform")
    checker = tmp_path / "killing_checker.py"
    checker.write_text(KILLING_CHECKER)
    cases = ["t1_e8_k2_softmax", "t13_e16_k4_sigmoid_raw", "t67_e128_k8_softmax"]
    bases = [dict(level="op", case_id=f"moe_route/reference/float32/{c}", op="moe_route",
                  kernel="reference", dtype="float32", case=c) for c in cases]  # fmt: skip
    results = sanitize.run_sanitized_group([sys.executable, str(checker)], "checked_cpu", 0, bases, 3, False)
    assert [r.case for r in results] == cases
    first, killed, after = results
    assert first.status == "pass" and first.extra["sanitized"] == "clean"
    assert (
        killed.status == "fail"
        and "exit 139" in killed.message
        and "ended during this case" in killed.message
    )
    assert "Segmentation fault" in killed.message
    assert after.status == "pass" and after.extra["sanitized"] == "clean"


def test_sanitized_finding_stays_with_its_case_when_clean_cases_follow(home, install_fixture):
    """The checker's exit-time summary ("ERROR SUMMARY: 1 error") is no finding of the group's last case."""
    from pathlib import Path

    from tessera.conformance import sanitize

    install_fixture("checked_platform")
    checker = Path(__file__).parent / "fixtures" / "checked_platform" / "fake_memcheck.py"
    cases = ["t13_e16_k4_sigmoid_raw", "t1_e8_k2_softmax"]
    bases = [dict(level="op", case_id=f"moe_route/reference/float32/{c}", op="moe_route", kernel="reference",
                  dtype="float32", case=c) for c in cases]  # fmt: skip
    planted, clean = sanitize.run_sanitized_group(
        [sys.executable, str(checker)], "checked_cpu", 0, bases, 3, False
    )
    assert planted.status == "fail" and "Invalid __global__ write" in planted.message
    assert clean.status == "pass" and clean.extra["sanitized"] == "clean", clean.message

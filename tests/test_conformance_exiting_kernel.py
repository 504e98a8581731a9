"""A kernel that calls sys.exit in a conformance case fails that case with what it did; the run goes on and
certifies nothing it did not pass."""

from __future__ import annotations


def test_a_kernel_that_exits_is_an_error_case_not_the_end_of_the_run(install_fixture, tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_HOME", str(tmp_path / "home"))
    install_fixture("faulty_kernel")
    import fixture_faulty_kernel

    from tessera.conformance.runner import RunOptions, run

    fixture_faulty_kernel.reset("rms_norm", (1,), exits=True)
    try:
        report = run(RunOptions(platform="cpu", ops=["rms_norm"], kernels=["faulty_rms_norm"], seed=1))
    finally:
        fixture_faulty_kernel.reset()
    errors = [r for r in report.results if r.status == "error"]
    assert len(errors) == 1 and errors[0].message == "SystemExit: 7", errors
    assert any(r.status == "pass" for r in report.results if r.level == "op") and not report.passed

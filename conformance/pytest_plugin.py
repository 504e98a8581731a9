"""The conformance suite as a pytest plugin, for CI systems:

    pytest --pyargs tessera.conformance --tessera-platform cuda [--tessera-full] [--tessera-ops a,b]

Each case becomes a test named by its case id; expected failures pass as xfail,
kernels a platform cannot run are skipped. The suite runs once, at collection.
Without ``--tessera-platform`` the plugin does nothing.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("tessera", "Tessera conformance")
    group.addoption(
        "--tessera-platform", default=None, help="platform to certify (runs tessera.conformance's cases)"
    )
    group.addoption("--tessera-device", type=int, default=0)
    group.addoption("--tessera-full", action="store_true", help="long contexts and large shapes")
    group.addoption("--tessera-ops", default=None, help="comma-separated ops")
    group.addoption("--tessera-kernels", default=None, help="comma-separated kernel names or globs")
    group.addoption(
        "--tessera-seed", type=int, default=None, help="replay a run's random draws (default: fresh)"
    )


def _results(config):
    if not hasattr(config, "_tessera_results"):
        from tessera.conformance.runner import RunOptions, run

        split = lambda v: [x for x in v.split(",") if x] if v else None  # noqa: E731
        options = RunOptions(platform=config.getoption("tessera_platform"), device_index=config.getoption("tessera_device"),
                             full=config.getoption("tessera_full"), ops=split(config.getoption("tessera_ops")),
                             kernels=split(config.getoption("tessera_kernels")), seed=config.getoption("tessera_seed"))  # fmt: skip
        config._tessera_results = run(options).results
    return config._tessera_results


def pytest_generate_tests(metafunc) -> None:
    if "conformance_result" not in metafunc.fixturenames:
        return
    if not metafunc.config.getoption("tessera_platform"):
        metafunc.parametrize("conformance_result", [None], ids=["no-platform"])
        return
    results = _results(metafunc.config)
    metafunc.parametrize("conformance_result", results, ids=[r.case_id for r in results])


@pytest.fixture
def conformance_result(request):
    return request.param

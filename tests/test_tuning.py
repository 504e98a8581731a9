"""Tuned configs: lookup order, nearest key, coverage misses, corrupt files, and the tuner."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from tessera.platform import HostEvent
from tessera.pluggable_layers.registry import KernelRegistry, PlatformFacts, register_references
from tessera.pluggable_layers.tuner import tune_kernel
from tessera.pluggable_layers.tuning import ConfigLookup, ConfigSpace, ShapeKey, TunedConfigFile, bucket_pow2

SPACE = ConfigSpace({"BLOCK": [64, 128, 256], "num_warps": [2, 4]}, default={"BLOCK": 128, "num_warps": 4})
KEY = ShapeKey(
    {"tokens": "pow2", "hidden": "exact"}, lambda x, *a, **k: {"tokens": x.shape[0], "hidden": x.shape[1]}
)


def write(folder, device, configs, default=None, kernel="k"):
    path = folder / kernel / f"{device}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "kernel": kernel,
        "device": device,
        "key_fields": ["tokens", "hidden"],
        "configs": configs,
        "default": default,
    }
    path.write_text(json.dumps(data))
    return path


def lookup(dirs, devices=("NVIDIA_H100", "sm_90")):
    return ConfigLookup("k", SPACE, KEY, dirs, list(devices))


def test_bucketing_and_space():
    assert [bucket_pow2(n) for n in (0, 1, 3, 64, 65)] == [1, 1, 4, 64, 128]
    assert len(SPACE.configs()) == 6
    with pytest.raises(ValueError, match="invalid"):
        ConfigSpace({"A": [1]}, default={"A": 2, "B": 1})


def test_shipped_file_by_canonical_device_name(tmp_path, monkeypatch):
    monkeypatch.delenv("TESSERA_TUNED_CONFIG_DIR", raising=False)
    write(tmp_path / "h100", "NVIDIA_H100", {"tokens=64,hidden=4096": {"BLOCK": 64, "num_warps": 2}})
    write(tmp_path / "h100", "NVIDIA_H200", {"tokens=64,hidden=4096": {"BLOCK": 256, "num_warps": 2}})
    found = lookup([tmp_path / "h100"])
    assert found.get(KEY.of(tokens=50, hidden=4096)) == {"BLOCK": 64, "num_warps": 2}
    assert "NVIDIA_H100.json (exact)" in found.sources["tokens=64,hidden=4096"]


def test_family_file_when_the_device_has_none(tmp_path, monkeypatch):
    monkeypatch.delenv("TESSERA_TUNED_CONFIG_DIR", raising=False)
    write(tmp_path, "sm_100", {"tokens=1,hidden=4096": {"BLOCK": 256, "num_warps": 4}})
    assert lookup([tmp_path], ("NVIDIA_B300", "sm_100")).get(KEY.of(tokens=1, hidden=4096))["BLOCK"] == 256


def test_user_directory_comes_first(tmp_path, monkeypatch):
    write(tmp_path / "plugin", "NVIDIA_H100", {"tokens=64,hidden=4096": {"BLOCK": 64, "num_warps": 2}})
    write(tmp_path / "user", "NVIDIA_H100", {"tokens=64,hidden=4096": {"BLOCK": 256, "num_warps": 4}})
    monkeypatch.setenv("TESSERA_TUNED_CONFIG_DIR", str(tmp_path / "user"))
    assert lookup([tmp_path / "plugin"]).get(KEY.of(tokens=64, hidden=4096))["BLOCK"] == 256


def test_nearest_key(tmp_path, monkeypatch):
    monkeypatch.delenv("TESSERA_TUNED_CONFIG_DIR", raising=False)
    write(tmp_path, "NVIDIA_H100", {
        "tokens=1,hidden=4096": {"BLOCK": 64, "num_warps": 2},
        "tokens=1024,hidden=4096": {"BLOCK": 256, "num_warps": 4},
        "tokens=8,hidden=8192": {"BLOCK": 128, "num_warps": 2},
    })  # fmt: skip
    found = lookup([tmp_path])
    assert found.get(KEY.of(tokens=512, hidden=4096))["BLOCK"] == 256
    assert found.get(KEY.of(tokens=2, hidden=4096))["BLOCK"] == 64
    assert "nearest key tokens=1024,hidden=4096" in found.sources["tokens=512,hidden=4096"]
    assert not found.misses


def test_default_with_a_coverage_miss(tmp_path, monkeypatch):
    monkeypatch.delenv("TESSERA_TUNED_CONFIG_DIR", raising=False)
    found = lookup([tmp_path])
    assert found.get(KEY.of(tokens=3, hidden=100)) == SPACE.default
    assert found.misses == {"k[tokens=4,hidden=100]"}
    write(tmp_path, "NVIDIA_H100", {}, default={"BLOCK": 64, "num_warps": 2})
    with_default = lookup([tmp_path])
    assert with_default.get(KEY.of(tokens=3, hidden=100))["BLOCK"] == 64 and with_default.misses


@pytest.mark.parametrize(
    "content",
    ["{not json", json.dumps({"kernel": "k", "device": "x"}), json.dumps(
        {"kernel": "k", "device": "x", "key_fields": [], "configs": {"tokens=1,hidden=1": {"BLOCK": 7, "num_warps": 2}}})],
)  # fmt: skip
def test_corrupt_file_is_ignored_with_a_warning(tmp_path, monkeypatch, caplog, content):
    monkeypatch.delenv("TESSERA_TUNED_CONFIG_DIR", raising=False)
    path = tmp_path / "k" / "NVIDIA_H100.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    write(tmp_path, "sm_90", {"tokens=1,hidden=1": {"BLOCK": 256, "num_warps": 2}})
    with caplog.at_level(logging.WARNING, logger="tessera.tuning"):
        found = lookup([tmp_path])
    assert "ignoring tuned-config file" in caplog.text and str(path) in caplog.text
    assert found.errors and found.get(KEY.of(tokens=1, hidden=1))["BLOCK"] == 256


def test_file_tuned_before_a_parameter_was_added_keeps_its_configs(tmp_path, monkeypatch, caplog):
    """A kernel that gains a config parameter must not lose its shipped tuning: the new parameter takes the
    space's default; a parameter the space does not know still makes the file invalid."""
    monkeypatch.delenv("TESSERA_TUNED_CONFIG_DIR", raising=False)
    write(tmp_path, "NVIDIA_H100", {"tokens=1,hidden=1": {"BLOCK": 256}})
    found = lookup([tmp_path])
    assert found.get(KEY.of(tokens=1, hidden=1)) == {"BLOCK": 256, "num_warps": SPACE.default["num_warps"]}
    assert not found.errors
    write(tmp_path, "NVIDIA_H100", {"tokens=1,hidden=1": {"BLOCK": 256, "num_warps": 2, "UNKNOWN": 1}})
    with caplog.at_level(logging.WARNING, logger="tessera.tuning"):
        found = lookup([tmp_path])
    assert found.errors and "UNKNOWN" in caplog.text


def chunked_silu_and_mul(x, out=None, config=None):
    """A CPU 'kernel' whose config changes how it works but not what it computes."""
    half = x.shape[1] // 2
    result = torch.empty(x.shape[0], half, dtype=x.dtype)
    step = config["BLOCK"]
    for s in range(0, half, step):
        result[:, s : s + step] = (
            torch.nn.functional.silu(x[:, s : s + step]) * x[:, half + s : half + s + step]
        )
    return result


def registry_with_chunked_silu(blocks: list[int]):
    """A registry holding the references and ``chunked_silu_and_mul`` tunable over ``blocks`` (default 64)."""
    registry = KernelRegistry()
    register_references(registry, provider="test")
    space = ConfigSpace({"BLOCK": blocks}, default={"BLOCK": 64})
    key = ShapeKey({"inter": "pow2"}, lambda x, *a, **k: {"inter": x.shape[1] // 2})
    kernel = registry.register(
        "silu_and_mul", chunked_silu_and_mul, name="chunked", config_space=space, shape_key=key,
        tune_inputs=lambda shape, dtype, device: ((torch.randn(8, 2 * shape["inter"], dtype=dtype),), {}),
    )  # fmt: skip
    return registry, kernel


def test_tuner_writes_a_file_the_lookup_reads(tmp_path, monkeypatch):
    monkeypatch.delenv("TESSERA_TUNED_CONFIG_DIR", raising=False)
    registry, kernel = registry_with_chunked_silu([16, 64, 7])
    data = tune_kernel(
        kernel,
        [{"inter": 128}, {"inter": 256}],
        torch.float32,
        torch.device("cpu"),
        "TEST_CPU",
        HostEvent,
        lambda: None,
        iters=3,
    )
    assert set(data.configs) == {"inter=128", "inter=256"}
    assert TunedConfigFile.model_validate(data.model_dump())
    path = tmp_path / "chunked" / "TEST_CPU.json"
    path.parent.mkdir()
    path.write_text(data.model_dump_json())
    registry.add_tuned_config_dir("cpu", tmp_path)
    bound = registry.bind(registry.select("silu_and_mul", PlatformFacts("cpu", device="TEST_CPU"), "float32"))
    assert bound.kernel.name == "chunked"
    x = torch.randn(2, 256)
    torch.testing.assert_close(bound(x), torch.nn.functional.silu(x[:, :128]) * x[:, 128:])
    assert "exact" in bound.lookup.sources["inter=128"]


def test_tune_cli_refuses_a_kernel_the_platform_cannot_run(fresh_discovery):
    from typer.testing import CliRunner

    from tessera.cli import app

    result = CliRunner().invoke(app, ["tune", "triton_rms_norm", "--platform", "cpu", "--dtype", "float32"])
    assert result.exit_code == 2 and "cannot run on cpu: platform cpu has no Triton" in result.output
    unknown = CliRunner().invoke(app, ["tune", "no_such_kernel", "--platform", "cpu"])
    assert (
        unknown.exit_code == 2
        and "unknown kernel 'no_such_kernel'; tunable kernels: triton_" in unknown.output
    )


def test_shipped_config_files_match_their_kernels(fresh_discovery):
    """Every configs/<kernel>/<device>.json a plugin ships parses and lies in its kernel's space."""
    from pathlib import Path

    from tessera.discovery import discover
    from tessera.kernel_registry import build_registry
    from tessera.pluggable_layers.tuning import load_config_file

    registry = build_registry(discover())
    root = Path(__file__).resolve().parents[1] / "plugins"
    files = sorted(root.glob("*/tessera_*/configs/*/*.json"))
    assert files, "no shipped tuned configs found"
    for path in files:
        kernel = registry.find(path.parent.name)
        data = load_config_file(path, kernel.name, kernel.config_space)
        assert data.key_fields == list(kernel.shape_key.fields), path


def test_h100_attention_config_is_found_for_a_simulated_h100(fresh_discovery):
    from tessera.discovery import discover
    from tessera.kernel_registry import build_registry
    from tessera.platform import Capabilities

    registry = build_registry(discover())
    facts = PlatformFacts(
        "cuda", Capabilities(triton_backend=True, dtypes=("bfloat16",)), device="NVIDIA_H100", arch="sm_90"
    )
    bound = registry.bind(registry.select("paged_attention", facts, "bfloat16"))
    assert bound.kernel.name == "triton_paged_attention"
    key = bound.kernel.shape_key.of(tokens=64, seqs=64, head_size=128, group=4, decode=1, dtype="bfloat16")
    config = bound.lookup.get(key)
    assert "exact" in bound.lookup.sources[ShapeKey.to_str(key)] and config["NUM_SPLITS"] >= 1
    blackwell = PlatformFacts("cuda", Capabilities(triton_backend=True), device="NVIDIA_B300", arch="sm_103")
    lookup = registry.bind(registry.select("paged_attention", blackwell, "bfloat16")).lookup
    lookup.get(key)
    assert "sm_103.json" in lookup.sources[ShapeKey.to_str(key)]
    h200 = PlatformFacts("cuda", Capabilities(triton_backend=True), device="NVIDIA_H200", arch="sm_90")
    lookup = registry.bind(registry.select("paged_attention", h200, "bfloat16")).lookup
    lookup.get(key)
    assert "NVIDIA_H200.json (exact)" in lookup.sources[ShapeKey.to_str(key)]
    # another Hopper card without a file of its own reads the family copy of the H100 tuning
    h800 = PlatformFacts("cuda", Capabilities(triton_backend=True), device="NVIDIA_H800", arch="sm_90")
    lookup = registry.bind(registry.select("paged_attention", h800, "bfloat16")).lookup
    assert lookup.get(key) == config and "sm_90.json (exact)" in lookup.sources[ShapeKey.to_str(key)]


def test_tuner_checks_every_config_of_an_in_place_op_from_the_same_state(monkeypatch):
    """causal_conv1d_update shifts its state in place: without restoring the inputs, the second config would
    start from the state the first left behind and be rejected against the reference."""
    from tessera.pluggable_layers.reference import reference

    monkeypatch.delenv("TESSERA_TUNED_CONFIG_DIR", raising=False)
    registry = KernelRegistry()
    register_references(registry, provider="test")
    space = ConfigSpace({"VARIANT": [1, 2, 3]}, default={"VARIANT": 1})
    key = ShapeKey({"seqs": "exact"}, lambda x, *a, **k: {"seqs": x.shape[0]})

    def conv_update(*args, config=None, **kwargs):
        return reference("causal_conv1d_update")(*args, **kwargs)

    def inputs(shape, dtype, device):
        seqs = shape["seqs"]
        return (torch.randn(seqs, 8), torch.randn(seqs, 8, 3), torch.randn(8, 4), None,
                torch.arange(seqs, dtype=torch.int32), "silu"), {}  # fmt: skip

    kernel = registry.register("causal_conv1d_update", conv_update, name="stateful", config_space=space,
                               shape_key=key, tune_inputs=inputs)  # fmt: skip
    data = tune_kernel(kernel, [{"seqs": 3}], torch.float32, torch.device("cpu"), "TEST_CPU", HostEvent, lambda: None,
                       iters=2)  # fmt: skip
    timings = data.meta["timings_ms"]["seqs=3"]["all"]
    assert all(isinstance(v, float) for v in timings.values()), timings


def test_tuner_times_with_the_given_timer_and_falls_back_to_events(monkeypatch):
    """A timer (graph replay on devices with graphs) decides; where it cannot time a call, events do."""
    monkeypatch.delenv("TESSERA_TUNED_CONFIG_DIR", raising=False)
    _, kernel = registry_with_chunked_silu([16, 32, 64])
    device_ms = {16: 1.0, 32: 2.0, 64: 3.0}  # what the timer reports, unlike any host timing

    def timer(call):
        return device_ms[call.keywords["config"]["BLOCK"]]

    data = tune_kernel(kernel, [{"inter": 128}], torch.float32, torch.device("cpu"), "TEST_CPU", HostEvent,
                       lambda: None, iters=2, timer=timer)  # fmt: skip
    assert data.configs["inter=128"] == {"BLOCK": 16}
    assert data.meta["timings_ms"]["inter=128"]["all"]["BLOCK=64"] == 3.0
    assert data.meta["timed_with"] == ["graph replay"]
    data = tune_kernel(kernel, [{"inter": 128}], torch.float32, torch.device("cpu"), "TEST_CPU", HostEvent,
                       lambda: None, iters=2, timer=lambda call: None)  # fmt: skip
    assert data.meta["timed_with"] == ["eager events"]

"""KV-cache layouts in the registry (plugin API 1.2): declared per kernel, paired by selection,
refused with a reason, explained by the CLI; the references compute the same in both layouts."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from tessera.cli import app
from tessera.platform import Capabilities
from tessera.pluggable_layers.errors import KernelError
from tessera.pluggable_layers.kv_layout import cache_shape, from_token_major
from tessera.pluggable_layers.reference import reference
from tessera.pluggable_layers.registry import KernelRegistry, PlatformFacts, register_references

CPU = PlatformFacts(name="cpu", capabilities=Capabilities())
runner = CliRunner()


def registry_with_pairs() -> KernelRegistry:
    registry = KernelRegistry()
    register_references(registry, "tessera")
    write, attend = reference("kv_cache_write"), reference("paged_attention")
    # registered as a 1.0 / 1.1 plugin does: no kv_layout, so the default (token-major) layout
    registry.register("kv_cache_write", write, name="old_writer", priority=60)
    registry.register("paged_attention", attend, name="old_reader", priority=60)
    registry.register("kv_cache_write", lambda *a: write(*a, kv_layout="hnd"), name="hm_writer", priority=55,
                      kv_layout="hnd")  # fmt: skip
    registry.register("paged_attention", lambda *a, **k: attend(*a, **k, kv_layout="hnd"), name="hm_reader",
                      priority=55, kv_layout="hnd")  # fmt: skip
    return registry


def test_kernels_that_name_no_layout_read_and_write_the_default_one():
    registry = registry_with_pairs()
    assert registry.get("kv_cache_write", "old_writer").kv_layouts == ("nhd",)
    assert registry.get("paged_attention", "reference").kv_layouts == ("nhd", "hnd")
    assert registry.get("rms_norm", "reference").kv_layouts == ()
    attend = registry.bind(registry.select("paged_attention", CPU, "float32"))
    assert (attend.name, attend.kv_layout) == ("old_reader", "nhd")
    write = registry.select("kv_cache_write", CPU, "float32", kv_layout=attend.kv_layout)
    assert write.kernel.name == "old_writer"


def test_a_head_major_reader_takes_a_head_major_writer_and_says_why_others_are_refused():
    registry = registry_with_pairs()
    attend = registry.bind(
        registry.select("paged_attention", CPU, "float32", overrides={"paged_attention": "hm_reader"})
    )
    assert attend.kv_layout == "hnd" and attend.extra == {}
    write = registry.select("kv_cache_write", CPU, "float32", kv_layout="hnd", kv_layout_from="hm_reader")
    assert write.kernel.name == "hm_writer"
    refused = {c.kernel.name: c.reason for c in write.candidates if c.verdict == "refused"}
    assert refused == {"old_writer": "writes the nhd KV layout, but the paged_attention kernel selected with it "
                                     "(hm_reader) reads hnd (KV layouts must match; plugin API 1.2)"}  # fmt: skip
    with pytest.raises(
        KernelError, match="override chose kernel 'old_writer', which cannot serve this call: writes the nhd"
    ):
        registry.select(
            "kv_cache_write", CPU, "float32", overrides={"kv_cache_write": "old_writer"}, kv_layout="hnd"
        )


def test_a_kernel_of_several_layouts_is_told_the_one_in_use():
    registry = registry_with_pairs()
    selection = registry.select("kv_cache_write", CPU, "float32", overrides={"kv_cache_write": "reference"},
                                kv_layout="hnd")  # fmt: skip
    bound = registry.bind(selection)
    assert bound.extra == {"kv_layout": "hnd"} and bound.kv_layout == "hnd"
    key, value = torch.randn(3, 2, 8), torch.randn(3, 2, 8)
    caches = [torch.zeros(cache_shape("hnd", 2, 4, 2, 8)) for _ in range(2)]
    bound(key, value, *caches, torch.tensor([0, 5, 6]))
    assert torch.equal(caches[0][1, :, 1], key[1]) and torch.equal(caches[1][1, :, 2], value[2])


def test_bad_layout_declarations_are_refused_at_registration():
    registry = KernelRegistry()
    with pytest.raises(
        KernelError, match="declares kv_layout, but only kv_cache_write and paged_attention use the KV"
    ):
        registry.register("rms_norm", lambda *a: None, name="x", kv_layout="hnd")
    with pytest.raises(KernelError, match=r"declares KV layout\(s\) \['nchw'\]; the layouts are: nhd, hnd"):
        registry.register("paged_attention", lambda *a: None, name="x", kv_layout=("hnd", "nchw"))


def test_reference_attention_is_the_same_in_both_layouts():
    g = torch.Generator().manual_seed(0)
    kc, vc = (torch.randn(6, 4, 2, 16, generator=g, dtype=torch.float64) for _ in range(2))
    q = torch.randn(5, 4, 16, generator=g, dtype=torch.float64)
    args = (torch.tensor([0, 1, 5], dtype=torch.int32), torch.tensor([7, 9], dtype=torch.int32),
            torch.tensor([[4, 1, 0], [2, 5, 3]], dtype=torch.int32), 0.25, 3)  # fmt: skip
    nhd = reference("paged_attention")(q, kc, vc, *args)
    hnd = reference("paged_attention")(q, from_token_major(kc, "hnd"), from_token_major(vc, "hnd"), *args,
                                       kv_layout="hnd")  # fmt: skip
    assert torch.equal(nhd, hnd)


def test_cli_explain_refuses_a_mismatched_pair_with_its_reason(fresh_discovery, monkeypatch):
    monkeypatch.setenv("TESSERA_KERNELS", "paged_attention=cpu_torch_paged_attention_hnd")
    result = runner.invoke(app, ["kernels", "explain", "kv_cache_write", "--platform", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["selected"] == "cpu_torch_kv_cache_write_hnd" and data["kv_layout"] == "hnd"
    refused = {c["kernel"]: c["reason"] for c in data["candidates"] if c["verdict"] == "refused"}
    assert refused["cpu_torch_kv_cache_write"].startswith(
        "writes the nhd KV layout, but the paged_attention kernel selected with it (cpu_torch_paged_attention_hnd) reads hnd"
    )
    text = runner.invoke(app, ["kernels", "explain", "kv_cache_write", "--platform", "cpu"])
    assert (
        "KV-cache layout: hnd (read by the paged_attention kernel cpu_torch_paged_attention_hnd)"
        in text.output
    )
    monkeypatch.setenv(
        "TESSERA_KERNELS",
        "paged_attention=cpu_torch_paged_attention_hnd,kv_cache_write=cpu_torch_kv_cache_write",
    )
    forced = runner.invoke(app, ["kernels", "explain", "kv_cache_write", "--platform", "cpu"])
    assert forced.exit_code != 0
    assert "which cannot serve this call: writes the nhd KV layout" in " ".join(forced.output.split())

"""The pack's plugin module: the entry point in pyproject.toml names it.

A kernel pack implements only ``tessera_register_kernels`` (platforms come from platform
plugins) and, optionally, ``tessera_conformance_expectations``. Registration is a
transaction: if this hook raises, nothing it registered stays.
"""

from __future__ import annotations

from pathlib import Path

from tessera.hookspecs import hookimpl

#: the plugin API this pack was written against (tessera.hookspecs.PLUGIN_API_VERSION)
TESSERA_PLUGIN_API = "1.2"

CONFIGS = Path(__file__).parent / "configs"
#: below the platform plugins' own kernels (50), so installing the pack changes no default choice;
#: `TESSERA_KERNELS=rms_norm=example_rms_norm` selects it. A vendor's faster kernel goes above (>100).
PRIORITY = 40


@hookimpl
def tessera_register_kernels(registry):
    from tessera_example_pack import linear_kmajor, rms_norm

    registry.register(
        "rms_norm",
        rms_norm.rms_norm,
        name="example_rms_norm",
        priority=PRIORITY,
        dtypes=("float32", "float16", "bfloat16"),
        graph_safe=True,
        config_space=rms_norm.CONFIG_SPACE,
        shape_key=rms_norm.SHAPE_KEY,
        tune_inputs=rms_norm.tune_inputs,
        description=rms_norm.__doc__.strip().splitlines()[0],
    )
    # a kernel that owns its weight layout: `prepare` runs once after loading (plugin API 1.2)
    registry.register(
        "linear",
        linear_kmajor.linear,
        name="example_linear_kmajor",
        priority=PRIORITY,
        dtypes=("float32", "float16", "bfloat16"),
        graph_safe=True,
        prepare=linear_kmajor.prepare,
        prepared_layout=linear_kmajor.PREPARED_LAYOUT,
        description=linear_kmajor.__doc__.strip().splitlines()[0],
    )
    # tuned configs: configs/<kernel>/<canonical device or arch>.json, per platform
    for platform in ("cpu", "cuda"):
        registry.add_tuned_config_dir(platform, CONFIGS)


@hookimpl
def tessera_conformance_expectations(platform):
    """Cases known to fail on ``platform``: case-id glob -> reason (none for this pack)."""
    return {}

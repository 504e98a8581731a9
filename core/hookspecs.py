"""The hooks a Tessera plugin implements, and the plugin API version.

A plugin is a module named by an entry point in the group ``tessera.plugins``::

    [project.entry-points."tessera.plugins"]
    cuda = "tessera_cuda.plugin"

The module declares the API version it was written against and implements any of
the hooks below, decorated with :data:`hookimpl`::

    from tessera.hookspecs import hookimpl

    TESSERA_PLUGIN_API = "1.0"

    @hookimpl
    def tessera_platforms():
        return [CudaPlatform()]

Every hook is called with keyword arguments; an implementation may accept any
subset of them. A plugin that fails to import, declares an incompatible API
version, raises (or calls ``sys.exit``) inside a hook or returns the wrong type is
recorded as broken (see :mod:`tessera.discovery`) and never stops discovery; every
import and hook call is timed, and one slower than a second is named with a warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from tessera.platform import Platform
    from tessera.pluggable_layers.registry import KernelRegistry

PROJECT_NAME = "tessera"
ENTRY_POINT_GROUP = "tessera.plugins"

#: The plugin API this core implements, as "MAJOR.MINOR". A plugin written
#: against "M.m" loads when M equals MAJOR and m is at most MINOR: minor versions
#: only add hooks or optional members, major versions may break plugins.
#:
#: 1.1 added the ``sample`` op's optional inputs (penalties, logit bias, min_p,
#: logprobs; see :data:`tessera.pluggable_layers.ops.SAMPLE_FEATURES`) and the
#: ``features=`` registration argument that declares them. A 1.0 kernel keeps
#: being selected for batches that use none of them.
#:
#: 1.2 added prepared weights and quantized linear layers: ``register(..., prepare=, prepared_layout=)``
#: lets a kernel of an op with weight arguments (``OpSpec.weights``: ``linear``, ``linear_fp8``,
#: ``linear_wna16``) turn the checkpoint's tensors into its own layout once, after loading (and again
#: after a reload); the layer keeps only the prepared form, and the conformance suite runs every op case
#: through it. It also added the ``linear_wna16`` op (4-bit GPTQ/AWQ weights). A kernel without a
#: ``prepare`` receives the weights as the checkpoint holds them, as before; 1.0 and 1.1 plugins load,
#: register and are selected unchanged.
#:
#: 1.2 added KV-cache layouts: ``register(..., kv_layout="hnd")`` (or a tuple) on a
#: ``paged_attention`` or ``kv_cache_write`` kernel names the cache block layout it
#: reads or writes (:data:`tessera.pluggable_layers.kv_layout.KV_LAYOUTS`); the
#: writer selected with an attention kernel must write the layout it reads, and the
#: engine allocates the cache in it. Omitted, a kernel reads / writes ``"nhd"``, the
#: only layout of 1.0 and 1.1, so their plugins load and run unchanged.
#:
#: The rule: a minor version only adds (a hook, an optional registration argument, an op, an optional
#: op input); a plugin declares the lowest version whose additions it uses, and keeps working under every
#: later minor version of the same major.
PLUGIN_API_VERSION = "1.2"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def tessera_platforms() -> list[Platform]:
    """Return the platforms this plugin provides.

    Implemented by platform plugins (tessera-cpu, tessera-cuda, ...); kernel packs
    do not implement it. Called once per discovery, before any kernel is
    registered.

    Must be cheap and must not initialise a device: no context creation, no
    allocation. Whether a platform can run here is asked later through
    :meth:`Platform.availability`.

    :return: a list of :class:`tessera.platform.Platform` instances, possibly
        empty. Platform names must be unique across all installed plugins; a
        second plugin claiming a taken name is recorded as broken.
    """


@hookspec
def tessera_register_kernels(registry: KernelRegistry) -> None:
    """Add kernel implementations and tuned-config folders to ``registry``.

    Implemented by platform plugins and kernel packs alike. Called once per
    registry, after every plugin's platforms are known, in plugin-name order.

    Registration is a transaction: if the hook raises, including because it
    registered a kernel name another plugin already took for that op, every
    kernel and tuned-config folder it added is removed, the plugin is broken, and
    its platforms are never selected.

    :param registry: the :class:`tessera.pluggable_layers.registry.KernelRegistry`
        to add to, through ``registry.register(op, impl, name=..., platforms=...,
        priority=..., supports=..., dtypes=..., graph_safe=..., provider=...,
        features=..., prepare=..., prepared_layout=..., kv_layout=...)`` (``features``:
        since 1.1, the op's optional features the kernel implements; ``prepare`` and
        ``prepared_layout``: since 1.2, the kernel's own weight layout and how to make it;
        ``kv_layout``: since 1.2, the KV-cache layout(s) a paged_attention /
        kv_cache_write kernel reads or writes)
        and ``registry.add_tuned_config_dir(platform, path)``.
    :return: nothing; the registry is changed in place.
    """


@hookspec
def tessera_conformance_expectations(platform: Platform) -> dict[str, str]:
    """Return the conformance cases expected to fail on ``platform``, with reasons.

    Implemented by any plugin that knows a limitation of its kernels or device.
    Called by the conformance runner once per run, for the platform under test.

    :param platform: the platform being certified.
    :return: a mapping from a case-id glob pattern (``fnmatch`` syntax, for
        example ``"paged_attention/triton_*/float16/*window*"``) to the reason it
        is expected to fail. An expected failure that passes is reported as such.
    """

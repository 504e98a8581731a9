"""What the registry answers with: the platform's facts, a query, a registered kernel, the candidates of
a selection with their verdicts, and a selected kernel bound to its tuned configs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tessera.pluggable_layers import kv_layout as kvl
from tessera.pluggable_layers.device import Capabilities
from tessera.pluggable_layers.ops import OPS
from tessera.pluggable_layers.tuning import ConfigLookup, ConfigSpace, ShapeKey

Verdict = Literal["selected", "outranked", "refused", "overridden-out"]

PRIORITY_REFERENCE = 0
PRIORITY_PORTABLE = 50
PRIORITY_PLATFORM = 100


@dataclass(frozen=True)
class PlatformFacts:
    """What the registry knows of a platform: plain data, so the contract never imports the engine."""

    name: str
    capabilities: Capabilities = field(default_factory=Capabilities)
    device: str | None = None  # canonical device name, e.g. "NVIDIA_H100"
    arch: str | None = None  # e.g. "sm_90"

    def config_names(self) -> list[str]:
        """Tuned-config file stems to try, most specific first."""
        return [n for n in (self.device, self.arch) if n]


@dataclass(frozen=True)
class KernelQuery:
    """The static facts a kernel's ``supports`` predicate decides on."""

    op: str
    platform: PlatformFacts
    dtype: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.facts.get(key, default)


SupportsFn = Callable[[KernelQuery], str | None]
PrepareFn = Callable[..., Mapping[str, Any]]


def provider_distribution(provider: str) -> str:
    """The distribution of a kernel's provider string ("tessera-cpu 0.2.0" -> "tessera-cpu"; "" stays "")."""
    return provider.split(" ", 1)[0]


@dataclass(frozen=True)
class KernelImpl:
    """One registered implementation of an op."""

    op: str
    name: str
    fn: Callable[..., Any]
    provider: str
    platforms: tuple[str, ...] | None = None  # None: every platform
    priority: int = PRIORITY_PORTABLE
    dtypes: tuple[str, ...] | None = None  # None: every dtype of the op
    supports: SupportsFn | None = None
    graph_safe: bool = True
    config_space: ConfigSpace | None = None
    shape_key: ShapeKey | None = None
    tune_inputs: Callable[..., Any] | None = None
    tune_shapes: tuple[Mapping[str, Any], ...] = ()
    description: str = ""
    features: tuple[str, ...] = ()  # the op's optional features this kernel implements (plugin API 1.1)
    kv_layouts: tuple[
        str, ...
    ] = ()  # KV ops: the cache layouts it reads / writes, () = "nhd" (plugin API 1.2)
    #: (plugin API 1.2) turns the op's weight arguments, as the checkpoint holds them, into this kernel's own form:
    #: ``prepare(weights: dict[name, tensor], **facts) -> dict[name, tensor | None]`` with the same names; the
    #: layer runs it once after loading (and after a reload) and keeps only what it returns
    prepare: PrepareFn | None = None
    prepared_layout: str = ""  # what ``prepare`` makes, in words ("qweight int32 [K/8, N] ...")

    @property
    def distribution(self) -> str:
        """The distribution that registered the kernel (``provider`` is "distribution version")."""
        return provider_distribution(self.provider)

    def weights_line(self) -> str | None:
        """ "prepared by X as Y" for a kernel with a prepare step, else None (it reads the checkpoint's form)."""
        if self.prepare is None:
            return None
        return f"prepared by {self.name} as {self.prepared_layout or 'its own layout'}"

    def refusal(self, query: KernelQuery) -> str | None:
        """Why this kernel cannot serve ``query``, or None when it can."""
        if self.platforms is not None and query.platform.name not in self.platforms:
            return f"registered for {', '.join(self.platforms)} only"
        if self.dtypes is not None and query.dtype is not None and query.dtype not in self.dtypes:
            return f"no {query.dtype} support (supports {', '.join(self.dtypes)})"
        missing = [f for f in OPS[self.op].feature_names() if query.get(f) and f not in self.features]
        if missing:
            return (f"does not declare the {self.op} feature(s) {', '.join(missing)} this call uses (plugin API 1.1:"
                    f" register with features=(...)); declared: {', '.join(self.features) or 'none'}")  # fmt: skip
        if (layout := kvl.layout_refusal(self, query)) is not None:
            return layout
        if self.supports is not None:
            try:
                return self.supports(query)
            except Exception as exc:  # noqa: BLE001 - a faulty predicate refuses, it does not crash selection
                return f"supports() raised {type(exc).__name__}: {exc}"
        return None


@dataclass
class Candidate:
    kernel: KernelImpl
    verdict: Verdict
    reason: str


@dataclass
class Selection:
    """The chosen kernel for one query, with every candidate and its verdict."""

    query: KernelQuery
    kernel: KernelImpl
    candidates: list[Candidate]
    override: str | None = None

    @property
    def fallback(self) -> bool:
        return self.kernel.name == "reference" and len(self.candidates) > 1 and self.override is None


class BoundKernel:
    """A selected kernel ready to call; kernels with a config space get ``config=`` per shape."""

    def __init__(
        self, kernel: KernelImpl, lookup: ConfigLookup | None, selection: Selection | None = None
    ) -> None:
        self.kernel = kernel
        self.lookup = lookup
        self.selection = selection
        self.extra = kvl.call_kwargs(kernel, selection.query if selection else None)

    @property
    def kv_layout(self) -> str | None:
        """The KV-cache layout this kernel runs in (KV ops only)."""
        if self.kernel.op not in kvl.KV_OPS:
            return None
        if self.selection is None:
            return kvl.layouts_of(self.kernel)[0]
        return kvl.selected_layout(self.kernel, self.selection.query)

    @property
    def name(self) -> str:
        return self.kernel.name

    def prepare(self, weights: Mapping[str, Any]) -> dict[str, Any]:
        """The kernel's form of ``weights`` (the op's weight arguments by name); unchanged without a prepare."""
        return prepare_weights(self.kernel, weights, self.selection.query.facts if self.selection else {})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs = {**self.extra, **kwargs} if self.extra else kwargs
        if self.lookup is None:
            return self.kernel.fn(*args, **kwargs)
        config = self.lookup.get(self.kernel.shape_key.of_call(*args, **kwargs))
        return self.kernel.fn(*args, config=config, **kwargs)

    def __repr__(self) -> str:
        return f"<BoundKernel {self.kernel.op}:{self.kernel.name} from {self.kernel.provider}>"


def prepare_weights(
    kernel: KernelImpl, weights: Mapping[str, Any], facts: Mapping[str, Any]
) -> dict[str, Any]:
    """Run ``kernel``'s prepare on ``weights``; it must return exactly the names it was given."""
    from tessera.pluggable_layers.errors import KernelError

    if kernel.prepare is None:
        return dict(weights)
    prepared = dict(kernel.prepare(dict(weights), **facts))
    if set(prepared) != set(weights):
        raise KernelError(f"{kernel.op} kernel {kernel.name!r} (from {kernel.provider}): prepare returned "
                          f"{sorted(prepared)} for the weights {sorted(weights)}; it must return the same names")  # fmt: skip
    return prepared

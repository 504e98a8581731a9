"""What a device can do, as typed data: the part of the device contract kernels and layers read.

A platform plugin returns :class:`Capabilities` from ``Platform.capabilities()``; the engine,
the registry (through ``PlatformFacts``) and every kernel's ``supports`` predicate branch on these
fields, never on a platform name or a device type. It lives in the contract package so that layers
and kernel packs can read it typed without importing the engine; ``tessera.platform`` re-exports it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Capabilities(BaseModel):
    """What a platform's device can do, as data the engine and registry branch on."""

    model_config = ConfigDict(frozen=True)

    dtypes: tuple[str, ...] = Field(("float32",), description="float dtypes the device computes in")
    fp8_dtype: str | None = Field(None, description="its fp8 flavour (float8_e4m3fn, ...fnuz), or none")
    graphs: bool = Field(False, description="work can be captured into a graph and replayed")
    pinned_memory: bool = Field(False, description="page-locked host buffers speed host-to-device copies")
    async_host_copy: bool = Field(
        True,
        description="results reach the host by a non-blocking copy the host waits for on an event; "
        "False where device tensors are host memory and are read where they are",
    )
    dist_backend: str = Field("gloo", description="torch.distributed backend between its devices")
    graph_safe_collectives: bool = Field(
        False,
        description="collectives on dist_backend can be captured into a graph and replayed (gloo's cannot)",
    )
    ranks_share_device: bool = Field(
        False,
        description="several tensor-parallel ranks may run on one device (host memory: the CPU); "
        "False where each rank needs a device of its own",
    )
    triton_backend: bool = Field(
        False, description="Triton can compile and launch kernels on the device (or its interpreter is on)"
    )

    @model_validator(mode="before")
    @classmethod
    def _plugin_api_1_0(cls, data: Any) -> Any:
        """Plugins written against 1.0 may pass ``triton=`` (now ``triton_backend``) and ``warp_size=``
        (never read, ignored): both keep working."""
        if isinstance(data, dict) and "triton" in data:
            data = dict(data)
            data.setdefault("triton_backend", data.pop("triton"))
        return data

    @property
    def triton(self) -> bool:
        """1.0 name of :attr:`triton_backend`, kept for plugins that read it."""
        return self.triton_backend

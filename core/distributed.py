"""torch.distributed for the engine: the platform's backend, whether it is usable, and joining a group.

The backend is the platform's ``Capabilities.dist_backend`` (gloo on the CPU, nccl on NVIDIA and AMD,
xccl on Intel). Ranks meet through torch.distributed's TCP rendezvous: spawned workers on one host get
a free port on 127.0.0.1; processes started by torchrun (or by hand on several hosts) read
``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass

from tessera.errors import ConfigError, PlatformError
from tessera.platform import Platform

#: how long a collective or the rendezvous may wait for a peer before torch.distributed gives up
DIST_TIMEOUT_S = 120


@dataclass(frozen=True)
class Rendezvous:
    """Where and as whom a process joins the group."""

    master_addr: str
    master_port: int
    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls, env=None) -> Rendezvous | None:
        """The torchrun variables, or None when ``WORLD_SIZE`` is not set."""
        env = os.environ if env is None else env
        if "WORLD_SIZE" not in env:
            return None
        try:
            rank, world = int(env.get("RANK", "0")), int(env["WORLD_SIZE"])
            return cls(env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", "29500")), rank, world,
                       int(env.get("LOCAL_RANK", str(rank))))  # fmt: skip
        except ValueError as exc:
            raise ConfigError(
                f"bad torchrun environment (RANK, WORLD_SIZE, MASTER_PORT, LOCAL_RANK): {exc}"
            ) from None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_status(platform: Platform, device_index: int = 0) -> tuple[str, bool, str]:
    """(backend, usable, why): whether torch.distributed can run the platform's backend here."""
    import torch.distributed as dist

    available = platform.availability()
    if not available.available:
        try:
            backend = platform.capabilities(device_index).dist_backend
        except Exception:  # noqa: BLE001 - an unavailable platform may not answer
            backend = "?"
        return backend, False, f"the platform is not available here: {available.reason}"
    backend = platform.capabilities(device_index).dist_backend
    if not dist.is_available():
        return backend, False, "this torch build has no torch.distributed"
    try:
        built = dist.is_backend_available(backend)
    except Exception as exc:  # noqa: BLE001 - an unknown backend name is a reason, not a crash
        return backend, False, f"torch.distributed cannot check backend {backend!r}: {exc}"
    if not built:
        return backend, False, f"this torch build has no {backend} backend"
    devices = len(platform.devices())
    if platform.capabilities(device_index).ranks_share_device:
        return backend, True, f"{backend}: any number of ranks share the {platform.name} device"
    return backend, devices > 0, f"{backend} across {devices} {platform.name} device(s)"


def max_ranks(platform: Platform, device_index: int = 0) -> int | None:
    """How many ranks this host can run from ``device_index`` on (None: no limit, ranks share a device)."""
    if platform.capabilities(device_index).ranks_share_device:
        return None
    return max(len(platform.devices()) - device_index, 0)


def make_store(where: Rendezvous, timeout_s: float = DIST_TIMEOUT_S, client: bool = False):
    """The rendezvous key-value store at ``MASTER_ADDR:MASTER_PORT``: rank 0 hosts it, or torchrun's agent does
    (``TORCHELASTIC_USE_AGENT_STORE``) and every rank connects to the agent's. ``client``: one more connection
    to it (for a thread of its own)."""
    import torch.distributed as dist

    hosts = where.rank == 0 and not client and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
    return dist.TCPStore(where.master_addr, where.master_port, where.world_size, is_master=hosts,
                         timeout=datetime.timedelta(seconds=timeout_s), wait_for_workers=False)  # fmt: skip


def join_group(platform: Platform, where: Rendezvous, device_index: int, store=None) -> None:
    """Make ``device_index`` current and join the process group on the platform's backend (through ``store``
    when given, else a TCP rendezvous at ``where``)."""
    import torch.distributed as dist

    backend, usable, why = backend_status(platform, device_index)
    if not usable:
        raise PlatformError(f"tensor parallelism needs torch.distributed's {backend} backend, which is not usable "
                            f"here: {why}")  # fmt: skip
    platform.set_device(device_index)
    timeout = datetime.timedelta(seconds=DIST_TIMEOUT_S)
    if store is not None:
        dist.init_process_group(backend, store=dist.PrefixStore("tessera/group", store), rank=where.rank,
                                world_size=where.world_size, timeout=timeout)  # fmt: skip
        return
    dist.init_process_group(backend, init_method=f"tcp://{where.master_addr}:{where.master_port}", rank=where.rank,
                            world_size=where.world_size, timeout=timeout)  # fmt: skip

"""Whether a model splits over ``tensor_parallel_size`` ranks on this platform: checked before any worker starts.

Attention heads must divide by the world size; kv heads too, or divide it (each kv head is then
replicated on ``N / kv_heads`` ranks); MLP and expert intermediate sizes must divide (or, with expert
parallelism, the number of experts); Mamba2 heads must divide, and groups too unless there is one.
The vocabulary needs nothing: it is padded. The platform must have a usable torch.distributed backend
and a device per rank (unless its ranks share a device: the CPU).
"""

from __future__ import annotations

from tessera.errors import ConfigError, PlatformError


def _divides(n: int, world: int) -> bool:
    return n % world == 0


def model_problems(spec, world: int, expert_parallel: bool) -> list[str]:
    """What about ``spec`` cannot be split over ``world`` ranks (empty: it can)."""
    from tessera.models.bamba import layer_types, mamba_shape

    problems = []
    hq, hk = spec.num_heads, spec.num_kv_heads
    arch = spec.architecture
    attention = arch != "BambaForCausalLM" or "attention" in layer_types(spec)
    if attention and not _divides(hq, world):
        problems.append(f"{hq} attention heads do not divide by {world}")
    if attention and not (_divides(hk, world) or _divides(world, hk)):
        problems.append(
            f"{hk} kv heads neither divide by {world} nor divide it (so they cannot be replicated)"
        )
    inter = spec.get("intermediate_size")
    if inter is not None and not _divides(int(inter), world):
        problems.append(f"intermediate_size {inter} does not divide by {world}")
    experts = int(spec.get("num_experts", "num_local_experts", default=0) or 0)
    if experts and expert_parallel and not _divides(experts, world):
        problems.append(f"{experts} experts do not divide by {world} (expert parallelism)")
    if experts and not expert_parallel and not _divides(int(spec.require("moe_intermediate_size")), world):
        problems.append(f"moe_intermediate_size {spec.require('moe_intermediate_size')} does not divide by {world}"
                        " (or enable expert parallelism)")  # fmt: skip
    if arch == "BambaForCausalLM" and "mamba" in layer_types(spec):
        shape = mamba_shape(spec)
        if not _divides(shape.num_heads, world):
            problems.append(f"{shape.num_heads} Mamba heads do not divide by {world}")
        if shape.n_groups != 1 and not _divides(shape.n_groups, world):
            problems.append(f"{shape.n_groups} Mamba groups do not divide by {world}")
    return problems


def check_tensor_parallel(spec, platform, config, local_ranks: int | None = None) -> None:
    """Raise a clear error when ``config.tensor_parallel_size`` cannot work for this model and platform
    (``local_ranks``: how many of the ranks run on this host; default all of them)."""
    from tessera.distributed import backend_status, max_ranks

    world = config.tensor_parallel_size
    if world < 1:
        raise ConfigError(f"tensor_parallel_size must be at least 1, got {world}")
    problems = model_problems(spec, world, config.enable_expert_parallel)
    if problems:
        raise ConfigError(f"{spec.architecture} at {spec.path} cannot be split over tensor_parallel_size={world}: "
                          + "; ".join(problems) + ". Choose a size that divides the model's heads and sizes")  # fmt: skip
    room, here = max_ranks(platform, config.device_index), world if local_ranks is None else local_ranks
    if room is not None and here > room:
        raise ConfigError(f"tensor_parallel_size={world} needs {here} {platform.name} devices from device "
                          f"{config.device_index} on, but this host has {room}; use at most {room}")  # fmt: skip
    backend, usable, why = backend_status(platform, config.device_index)
    if not usable:
        raise PlatformError(f"tensor parallelism on {platform.name} needs torch.distributed's {backend} backend, "
                            f"which is not usable here: {why}")  # fmt: skip

"""The autotuner behind ``tessera tune``: check and time every config of a kernel, keep the fastest.

For each shape the kernel's ``tune_inputs`` builds fresh random inputs on the
device; each valid config of the kernel's space is run once and its output
compared with the float64 reference (configs that fail the op's budget or raise
are skipped, with the reason kept), then timed with device events: warm-up runs,
then the median of ``iters`` timed runs. The fastest config per shape key goes
into a :class:`TunedConfigFile`. Timing and error figures come from
:mod:`tessera.pluggable_layers.measure`, as for the benches and the conformance suite.
"""

from __future__ import annotations

import datetime as _dt
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from tessera.pluggable_layers.checks import trusted_indices
from tessera.pluggable_layers.errors import KernelError
from tessera.pluggable_layers.measure import EventClock, median_ms, output_error, to_reference_inputs
from tessera.pluggable_layers.ops import op_spec
from tessera.pluggable_layers.reference import reference
from tessera.pluggable_layers.registry import KernelImpl
from tessera.pluggable_layers.tuning import ShapeKey, TunedConfigFile


def restore(args: Sequence[Any], pristine: Sequence[Any]) -> None:
    for arg, saved in zip(args, pristine, strict=True):
        if isinstance(arg, torch.Tensor):
            arg.copy_(saved)


def _label(config: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in config.items())


def _time_call(call, timer, clock, iters: int, warmup: int) -> tuple[float, str]:
    """(milliseconds, method): graph replay through ``timer`` where it can, else eager events."""
    with trusted_indices():  # the inputs were checked once already; time the kernel, not the checks
        ms = timer(call) if timer is not None else None
        if ms is not None:
            return ms, "graph replay"
        return median_ms([call], clock, iters=iters, warmup=warmup), "eager events"


def _tune_shape(
    kernel: KernelImpl, shape: dict, dtype, device, budget: float, time_call
) -> tuple[str, dict, dict]:
    """Check and time every candidate config on one shape: (shape key, best config, its timing record)."""
    args, kwargs = kernel.tune_inputs(shape, dtype, device)
    key_tuple = kernel.shape_key.of_call(*args, **kwargs)
    key = ShapeKey.to_str(key_tuple)
    candidates = kernel.config_space.configs(dict(key_tuple))
    expected = reference(kernel.op)(*to_reference_inputs(args), **to_reference_inputs(kwargs))
    pristine = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    results: dict[str, float | str] = {}
    methods: set[str] = set()
    for config in candidates:
        restore(args, pristine)  # ops that update state in place start each check from the same state
        try:
            err = output_error(kernel.fn(*args, config=config, **kwargs), expected)
            if not err <= budget:
                results[_label(config)] = f"rejected: error {err:.3g} over budget {budget:.3g}"
                continue
            results[_label(config)], method = time_call(
                functools.partial(kernel.fn, *args, config=config, **kwargs)
            )
            methods.add(method)
        except Exception as exc:  # noqa: BLE001 - a config that cannot run is skipped, with its reason
            results[_label(config)] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    timed = {k: v for k, v in results.items() if isinstance(v, float)}
    if not timed:
        raise KernelError(f"no config of {kernel.name!r} ran correctly for {key}: {results}")
    best = min(candidates, key=lambda c: timed.get(_label(c), float("inf")))
    timing = {"best_ms": timed[_label(best)], "default_ms": timed.get(_label(kernel.config_space.default)),
              "timed_with": sorted(methods), "ran": len(timed), "all": results}  # fmt: skip
    return key, best, timing


def tune_kernel(
    kernel: KernelImpl,
    shapes: Sequence[Mapping[str, Any]],
    dtype: torch.dtype,
    device: torch.device,
    device_name: str,
    make_event: Callable[[], Any],
    synchronize: Callable[[], None],
    warmup: int = 3,
    iters: int = 10,
    log: Callable[[str], None] = lambda _: None,
    timer: Callable[[Callable[[], Any]], float | None] | None = None,
) -> TunedConfigFile:
    """Check every candidate config of ``kernel`` on each shape against the reference, time the ones within
    the op's budget, and keep the fastest per shape key.

    ``timer`` (the CLI passes graph replay where the platform has graphs) returns the device time of one
    call, or None when it cannot time that call; then, and without a timer, each call is timed eagerly
    between two events, which for microsecond kernels measures the launch more than the kernel.
    """
    if kernel.config_space is None or kernel.shape_key is None or kernel.tune_inputs is None:
        raise KernelError(
            f"kernel {kernel.name!r} declares no config space, shape key and tune inputs; it cannot be tuned"
        )
    if not shapes:
        raise KernelError(f"no shapes to tune {kernel.name!r} on; pass --shapes")
    clock = EventClock(make_event, synchronize)
    budget = op_spec(kernel.op).budget(str(dtype).removeprefix("torch."))
    configs: dict[str, dict] = {}
    timings: dict[str, dict] = {}
    timed_with: set[str] = set()
    for shape in shapes:
        key, best, timing = _tune_shape(kernel, dict(shape), dtype, device, budget,
                                        lambda call: _time_call(call, timer, clock, iters, warmup))  # fmt: skip
        configs[key], timings[key] = best, timing
        timed_with |= set(timing["timed_with"])
        log(
            f"{kernel.name} {key}: best {_label(best)} {timing['best_ms']:.4f} ms over {timing['ran']} configs"
        )
    return TunedConfigFile(
        kernel=kernel.name,
        device=device_name,
        key_fields=list(kernel.shape_key.fields),
        configs=configs,
        default=kernel.config_space.default,
        meta={
            "dtype": str(dtype).removeprefix("torch."),
            "torch": torch.__version__,
            "tuned_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "timed_with": sorted(timed_with),
            "timings_ms": timings,
        },
    )

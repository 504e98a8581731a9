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
    ref_fn = reference(kernel.op)
    configs: dict[str, dict] = {}
    timings: dict[str, dict] = {}
    timed_with: set[str] = set()
    for shape in shapes:
        args, kwargs = kernel.tune_inputs(dict(shape), dtype, device)
        key_tuple = kernel.shape_key.of_call(*args, **kwargs)
        key = ShapeKey.to_str(key_tuple)
        candidates = kernel.config_space.configs(dict(key_tuple))
        expected = ref_fn(*to_reference_inputs(args), **to_reference_inputs(kwargs))
        pristine = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
        results: dict[str, float | str] = {}
        shape_timed_with: set[str] = set()
        for config in candidates:
            label = ",".join(f"{k}={v}" for k, v in config.items())
            restore(args, pristine)  # ops that update state in place start each check from the same state
            try:
                err = output_error(kernel.fn(*args, config=config, **kwargs), expected)
                if not err <= budget:
                    results[label] = f"rejected: error {err:.3g} over budget {budget:.3g}"
                    continue
                call = functools.partial(kernel.fn, *args, config=config, **kwargs)
                with trusted_indices():  # the inputs were checked once above; time the kernel, not the checks
                    ms = timer(call) if timer is not None else None
                    if ms is None:
                        ms = median_ms([call], clock, iters=iters, warmup=warmup)
                        shape_timed_with.add("eager events")
                    else:
                        shape_timed_with.add("graph replay")
                    results[label] = ms
            except Exception as exc:  # noqa: BLE001 - a config that cannot run is skipped, with its reason
                results[label] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        timed = {k: v for k, v in results.items() if isinstance(v, float)}
        if not timed:
            raise KernelError(f"no config of {kernel.name!r} ran correctly for {key}: {results}")
        best_label = min(timed, key=timed.get)
        best = next(c for c in candidates if ",".join(f"{k}={v}" for k, v in c.items()) == best_label)
        configs[key] = best
        timings[key] = {
            "best_ms": timed[best_label],
            "default_ms": timed.get(",".join(f"{k}={v}" for k, v in kernel.config_space.default.items())),
            "timed_with": sorted(shape_timed_with),
            "all": results,
        }
        timed_with |= shape_timed_with
        log(f"{kernel.name} {key}: best {best_label} {timed[best_label]:.4f} ms over {len(timed)} configs")
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

"""The autotuner behind ``tessera tune``: check and time every config of a kernel, keep the fastest.

For each shape the kernel's ``tune_inputs`` builds fresh random inputs on the
device; each valid config of the kernel's space is run once and its output
compared with the float64 reference (configs that fail the op's budget or raise
are skipped, with the reason kept), then timed with device events: warm-up runs,
then the median of ``iters`` timed runs. The fastest config per shape key goes
into a :class:`TunedConfigFile`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from tessera.pluggable_layers.checks import trusted_indices
from tessera.pluggable_layers.errors import KernelError
from tessera.pluggable_layers.ops import op_spec
from tessera.pluggable_layers.reference import reference
from tessera.pluggable_layers.registry import KernelImpl
from tessera.pluggable_layers.tuning import ShapeKey, TunedConfigFile


def to_reference_inputs(value: Any) -> Any:
    """Float tensors to float64 on the CPU (the oracle's precision); fp8 and integers kept as they are."""
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu")
        return t.double() if t.dtype in (torch.float16, torch.bfloat16, torch.float32) else t.clone()
    if isinstance(value, tuple | list):
        return type(value)(to_reference_inputs(v) for v in value)
    return value


def normalized_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    if out.shape != ref.shape:
        return float("inf")
    o, r = out.detach().to("cpu", torch.float64), ref.to(torch.float64)
    if torch.isnan(o).any():
        return float("nan")
    denom = r.norm().clamp(min=1e-30)
    return float((o - r).norm() / denom)


def output_error(out: Any, ref: Any) -> float:
    """The worst normalized error over the tensors of an op's output (0 for in-place ops returning None)."""
    if ref is None:
        return 0.0
    outs = out if isinstance(out, tuple | list) else (out,)
    refs = ref if isinstance(ref, tuple | list) else (ref,)
    errors = [normalized_error(o, r) for o, r in zip(outs, refs, strict=True) if o.is_floating_point()]
    return max(errors, default=0.0)


def restore(args: Sequence[Any], pristine: Sequence[Any]) -> None:
    for arg, saved in zip(args, pristine, strict=True):
        if isinstance(arg, torch.Tensor):
            arg.copy_(saved)


def time_call(
    fn: Callable[[], Any],
    make_event: Callable[[], Any],
    synchronize: Callable[[], None],
    warmup: int,
    iters: int,
) -> float:
    for _ in range(warmup):
        fn()
    synchronize()
    times = []
    for _ in range(iters):
        start, end = make_event(), make_event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


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
                        ms = time_call(call, make_event, synchronize, warmup, iters)
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

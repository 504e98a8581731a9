"""``tessera kernels list`` and ``tessera kernels explain``."""

from __future__ import annotations

import typer
from rich.table import Table

from tessera.cli.common import console, parse_shape, print_json, user_errors
from tessera.discovery import get_discovery
from tessera.discovery_guard import probe
from tessera.errors import ConfigError
from tessera.kernel_registry import get_registry, platform_facts
from tessera.pluggable_layers.kv_layout import KV_OPS, layouts_of, selected_layout
from tessera.pluggable_layers.ops import FLOAT_DTYPES, OPS
from tessera.pluggable_layers.registry import KernelImpl, Selection

app = typer.Typer(help="Which kernels serve each op, and why one is chosen.", no_args_is_help=True)


def kernel_json(k: KernelImpl) -> dict:
    return {
        "name": k.name,
        "provider": k.provider,
        "priority": k.priority,
        "platforms": list(k.platforms) if k.platforms is not None else "all",
        "dtypes": list(k.dtypes) if k.dtypes is not None else "all",
        "graph_safe": k.graph_safe,
        "tunable": k.config_space is not None,
        "description": k.description,
        **({"kv_layouts": list(layouts_of(k))} if k.op in KV_OPS else {}),
    }


def _platform(name: str | None):
    from tessera.discovery import ensure_registered, select_platform

    discovery = get_discovery()
    ensure_registered(discovery)
    if name is None:
        return select_platform(None, discovery)
    platform = discovery.platforms.get(name)
    if platform is None:
        select_platform(name, discovery)  # raises the precise error
    return platform


@app.command("list")
def list_kernels(
    platform: str | None = typer.Option(
        None, "--platform", "-p", help="Only kernels registered for this platform."
    ),
    op: str | None = typer.Option(None, "--op", help="Only this op."),
    as_json: bool = typer.Option(False, "--json", help="Emit JSON."),
) -> None:
    """Every op with its registered kernels (candidates), highest priority first."""
    with user_errors():
        registry = get_registry()
        if platform is not None:
            _platform(
                platform
            )  # an unknown name is an error naming the installed platforms, not an empty table
        if op is not None and op not in OPS:
            raise ConfigError(f"no op {op!r}; the ops are {', '.join(sorted(OPS))}")
        ops = [op] if op else list(OPS)
        data = {}
        for name in ops:
            kernels = [
                k
                for k in registry.kernels(name)
                if platform is None or k.platforms is None or platform in k.platforms
            ]
            data[name] = {
                "summary": OPS[name].summary,
                "tolerance": OPS[name].tolerance,
                "kernels": [kernel_json(k) for k in kernels],
            }
    if as_json:
        print_json({"platform": platform, "ops": data})
        return
    table = Table(title="Tessera kernels" + (f" for {platform}" if platform else ""), show_lines=True)
    for column in ("op", "kernel", "provider", "priority", "platforms", "graph safe"):
        table.add_column(column, overflow="fold")
    for name, entry in data.items():
        for i, k in enumerate(entry["kernels"]):
            plats = k["platforms"] if k["platforms"] == "all" else ",".join(k["platforms"])
            table.add_row(
                name if i == 0 else "",
                k["name"],
                k["provider"],
                str(k["priority"]),
                plats,
                "yes" if k["graph_safe"] else "no",
            )
    console.print(table)


def selection_json(selection: Selection, config_info: dict | None) -> dict:
    q = selection.query
    return {
        "op": q.op,
        "platform": q.platform.name,
        "device": q.platform.device,
        "arch": q.platform.arch,
        "dtype": q.dtype,
        "selected": selection.kernel.name,
        "override": selection.override,
        "fallback": selection.fallback,
        "weights": selection.kernel.weights_line(),
        "candidates": [
            {
                "kernel": c.kernel.name,
                "provider": c.kernel.provider,
                "priority": c.kernel.priority,
                "verdict": c.verdict,
                "reason": c.reason,
                **({"kv_layouts": list(layouts_of(c.kernel))} if q.op in KV_OPS else {}),
            }
            for c in selection.candidates
        ],
        "config": config_info,
        **({"kv_layout": selected_layout(selection.kernel, q)} if q.op in KV_OPS else {}),
    }


@app.command("explain")
def explain(
    op: str = typer.Argument(..., help="Op name, e.g. paged_attention."),
    platform: str | None = typer.Option(
        None, "--platform", "-p", help="Platform (default: the one selected here)."
    ),
    dtype: str | None = typer.Option(
        None,
        "--dtype",
        help="Activation dtype (default: what the engine runs here for --model, or for the built-in model).",
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint folder whose dtype the default follows (default: the built-in model).",
    ),
    shape: str | None = typer.Option(
        None, "--shape", help="Shape key for the tuned-config lookup, e.g. tokens=64,hidden=4096."
    ),
    as_json: bool = typer.Option(False, "--json", help="Emit JSON."),
) -> None:
    """Every candidate kernel for OP on a platform: taken, outranked or refused, and why."""
    with user_errors():
        target = _platform(platform)
        facts = platform_facts(target)
        if dtype is not None and dtype not in FLOAT_DTYPES:
            raise ConfigError(f"--dtype {dtype!r}: use one of {', '.join(FLOAT_DTYPES)}")
        dtype, dtype_source = (dtype, "given") if dtype else _engine_dtype(model, facts)
        registry = get_registry()
        selection = registry.select(op, facts, dtype, **_pairing_facts(registry, op, facts, dtype))
        config_info = _config_info(registry, selection, shape)
        available = probe(target).availability
    if as_json:
        extra = {"platform_available": available.available, "dtype_source": dtype_source}
        print_json(selection_json(selection, config_info) | extra)
        return
    _print_selection(selection, dtype_source, available, config_info)


def _pairing_facts(registry, op: str, facts, dtype: str | None) -> dict:
    """kv_cache_write is explained as the engine selects it: to write the layout the chosen paged_attention reads."""
    if op != "kv_cache_write":
        return {}
    attend = registry.select("paged_attention", facts, dtype)
    return {"kv_layout": selected_layout(attend.kernel, attend.query), "kv_layout_from": attend.kernel.name}


def _print_selection(selection: Selection, dtype_source: str, available, config_info: dict | None) -> None:
    """``kernels explain`` as text: the choice, where the dtype came from, every candidate's verdict."""
    q = selection.query
    facts, dtype = q.platform, q.dtype
    where = f"{facts.name}" + (f" ({facts.device}, {facts.arch})" if facts.device else "")
    console.print(
        f"[bold]{q.op}[/] on {where}, dtype {dtype}: [green]{selection.kernel.name}[/] from {selection.kernel.provider}"
    )
    if selection.kernel.weights_line():
        console.print(f"weights: {selection.kernel.weights_line()}", highlight=False)
    if dtype_source != "given":
        console.print(f"[dim]dtype {dtype}: {dtype_source}; --dtype to choose another[/]", highlight=False)
    if q.op in KV_OPS:
        by = q.get("kv_layout_from")
        layout = selected_layout(selection.kernel, q)
        console.print(f"KV-cache layout: {layout}" + (f" (read by the paged_attention kernel {by})" if by else ""),
                      highlight=False)  # fmt: skip
    if not available.available:
        console.print(
            f"[yellow]note:[/] {facts.name} is not available here ({available.reason}); capabilities assumed default"
        )
    table = Table(show_lines=False)
    for column in ("kernel", "provider", "priority", "verdict", "reason"):
        table.add_column(column, overflow="fold")
    style = {"selected": "green", "refused": "red", "outranked": "yellow", "overridden-out": "yellow"}
    for c in selection.candidates:
        verdict = f"[{style[c.verdict]}]{c.verdict}[/]"
        table.add_row(c.kernel.name, c.kernel.provider, str(c.kernel.priority), verdict, c.reason)
    console.print(table)
    if config_info:
        console.print(f"tuned config: {config_info}")


def _engine_dtype(model: str | None, facts) -> tuple[str | None, str]:
    """The dtype ``generate`` would run here with ``dtype="auto"``, and where it comes from."""
    from tessera.config import auto_dtype

    if facts.capabilities is None:
        return None, "the platform reports no capabilities"
    if model:
        from tessera.models.spec import ModelSpec

        checkpoint = ModelSpec.from_dir(model).torch_dtype
        what = f"what the engine runs {model} in here (checkpoint dtype {checkpoint or 'unset'})"
    else:
        from tessera.default_model import CONFIG

        checkpoint = CONFIG["torch_dtype"]
        what = "what `tessera generate` runs the built-in model in here (--model DIR for a checkpoint's)"
    return auto_dtype(checkpoint, facts.capabilities.dtypes), what


def _config_info(registry, selection: Selection, shape: str | None) -> dict | None:
    lookup = registry.config_lookup(selection.kernel, selection.query.platform)
    if lookup is None:
        return None
    info = {
        "kernel": lookup.kernel,
        "files": [str(path) for path, _ in lookup.files],
        "file_errors": lookup.errors,
        "default": lookup.space.default,
        "key_fields": list(lookup.shape_key.fields),
    }
    if shape:
        key = lookup.shape_key.of(**parse_shape(shape, lookup.shape_key.fields))
        info["key"] = lookup.shape_key.to_str(key)
        info["config"] = lookup.get(key)
        info["source"] = lookup.sources[info["key"]]
    return info

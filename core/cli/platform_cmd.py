"""``tessera platform list`` and ``tessera platform show``."""

from __future__ import annotations

import logging

import typer
from rich.markup import escape
from rich.table import Table

from tessera import hookspecs
from tessera.cli.common import console, err_console, human_bytes, print_json, user_errors
from tessera.discovery import PlatformReport, PluginReport, ensure_registered, get_discovery
from tessera.errors import PlatformError

app = typer.Typer(help="What platforms are installed, usable here, and broken.", no_args_is_help=True)

STATUS_STYLE = {"ok": "green", "broken": "red", "incompatible": "red", "missing": "yellow"}


def certificates_of(platform: str) -> list[dict]:
    """The stored certificates of ``platform`` (one per device and scope), each verified now: status
    verified, stale, unverified or corrupt, with the reason."""
    from tessera.conformance.certificate import latest_certificates

    return [certificate_entry(checked) for checked in latest_certificates(platform)]


def certificate_entry(checked) -> dict:
    """One checked certificate as plain data (``report``: the report that was checked, if one was found)."""
    entry = {
        "status": checked.status,
        "reason": checked.reason,
        "path": checked.path,
        "report": checked.report,
    }
    c = checked.certificate
    if c is not None:
        entry |= {"device": c.device, "canonical_device": c.canonical_device, "passed": c.passed, "total": c.total,
                  "verdict": c.verdict, "date": c.date, "suite_version": c.suite_version, "mode": c.mode,
                  "scope": c.scope, "report_sha256": c.report_sha256, "report_path": c.report_path,
                  "world_size": c.world_size, "untested_ops": c.untested_ops, "excused": c.excused}  # fmt: skip
    return entry


def plugin_json(report: PluginReport) -> dict:
    data = report.model_dump(mode="json")
    for platform in data["platforms"]:
        platform["certificates"] = certificates_of(platform["name"])
    return data


def _untested(c: dict) -> str:
    """``; untested: a, b (why)`` for a certificate that left ops untested, and ``; excused: op/kernel (why)``
    for kernels that failed as their plugin expected (markup; ``""`` when neither)."""
    from tessera.conformance.report import untested_text

    text = (
        f"[yellow]; untested: {escape(untested_text(c['untested_ops']))}[/]" if c.get("untested_ops") else ""
    )
    if c.get("excused"):
        listing = ", ".join(f"{k} ({why})" for k, why in c["excused"].items())
        text += f"[yellow]; excused (not certified where they fail): {escape(listing)}[/]"
    return text


def certificate_what(c: dict) -> str:
    """The recorded result of a readable certificate: passed/total, device, date, suite, mode, scope."""
    scope = "" if c["scope"] == "complete" else f", partial: {c['scope']}"
    return escape(
        f"{c['passed']}/{c['total']} on {c['canonical_device']}, {c['date'][:10]}, suite {c['suite_version']} ({c['mode']}{scope})"
    )


def certificate_line(c: dict) -> str:
    """One certificate as a line; only a verified one is called conformant, and then with the ops it left
    untested ("conformant; untested: all_gather, all_reduce (why): 1/1 on ...")."""
    if c["status"] == "corrupt":
        return f"[red]certificate corrupt[/]: {escape(c['path'])}: {escape(c['reason'])}"
    if c["status"] == "verified":
        style = {"conformant": "green", "conformant except expected failures": "yellow"}.get(
            c["verdict"], "red"
        )
        sep = ":" if c.get("untested_ops") or c.get("excused") else ""
        return f"certificate: [{style}]{c['verdict']}[/]{_untested(c)}{sep} {certificate_what(c)}"
    return (
        f"[yellow]certificate {c['status']}[/] ({escape(c['reason'])}): {certificate_what(c)}{_untested(c)}"
    )


def _certificate_text(platform: str) -> str:
    return "\n".join(certificate_line(c) for c in certificates_of(platform))


def _capability_value(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


def capability_lines(capabilities) -> list[str]:
    """One ``name: value`` line per capability field, in the contract's field order."""
    return [f"{k.replace('_', ' ')}: {_capability_value(v)}" for k, v in capabilities.model_dump().items()]


def _devices_text(platform: PlatformReport) -> str:
    return "\n".join(
        f"{d.index}: {d.name} ({d.arch}, {human_bytes(d.memory_total)})" for d in platform.devices
    )


def _timing_text(r: PluginReport) -> str:
    parts = [f"import {r.load_seconds:.3f}s"] if r.load_seconds is not None else []
    parts += [f"{hook.removeprefix('tessera_')} {s:.3f}s" for hook, s in r.hook_seconds.items()]
    return "\nload: " + ", ".join(parts) if parts else ""


def _render_list(reports: list[PluginReport], verbose: bool) -> Table:
    table = Table(title="Tessera plugins", show_lines=True)
    for column in ("plugin", "distribution", "status", "platform", "devices / reason"):
        table.add_column(column, overflow="fold")
    for r in reports:
        style = STATUS_STYLE.get(r.status, "white")
        dist = f"{r.distribution or '-'} {r.version or ''}".strip()
        if verbose:
            dist += _timing_text(r)
        head = [r.plugin, dist, f"[{style}]{r.status}[/]"]
        if not r.platforms:
            what = "[cyan]kernel pack[/]" if r.kernel_pack else "-"
            table.add_row(*head, what, r.error or "")
            continue
        for p in r.platforms:
            mark = "[green]available[/]" if p.available else "[yellow]unavailable[/]"
            detail = _devices_text(p) if p.available else p.reason
            if r.status != "ok":  # a broken plugin's platforms are never selected: say why first
                mark, detail = "[red]not usable[/]", f"{r.error}\n{detail}"
            if verbose and p.capabilities:
                detail += f"\n{p.reason}\n" + "; ".join(capability_lines(p.capabilities))
            certs = _certificate_text(p.name)
            table.add_row(
                *head, f"{p.name} {mark}\npriority {p.priority}", detail + ("\n" + certs if certs else "")
            )
    return table


@app.command("list")
def list_platforms(
    as_json: bool = typer.Option(False, "--json", help="Emit the report as JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show capabilities and full reasons."),
    strict: bool = typer.Option(
        False, "--strict", help="Exit 1 when any plugin is broken, incompatible or missing."
    ),
) -> None:
    """Every installed plugin, its platforms, their availability and devices.

    The kernel registry is built too, so that a plugin failing to register its kernels shows as broken.
    """
    quiet = logging.getLogger("tessera.discovery")
    quiet.disabled = True  # this command reports plugin warnings itself, below the table
    try:
        discovery = get_discovery()
        ensure_registered(discovery)
    finally:
        quiet.disabled = False
    reports = discovery.reports()
    if as_json:
        print_json(
            {
                "plugin_api": hookspecs.PLUGIN_API_VERSION,
                "plugins": [plugin_json(r) for r in reports],
            }
        )
    else:
        console.print(_render_list(reports, verbose))
        if not reports:
            console.print("No Tessera plugins are installed: pip install tessera-cpu")
        for r in reports:
            for warning in r.warnings:
                err_console.print(
                    f"[yellow]warning:[/] plugin {escape(r.label())}: {escape(warning)}", highlight=False
                )
    if strict and any(r.status != "ok" for r in reports):
        raise typer.Exit(1)


@app.command("show")
def show_platform(
    name: str = typer.Argument(..., help="Platform name, as in `tessera platform list`."),
    as_json: bool = typer.Option(False, "--json", help="Emit JSON."),
) -> None:
    """One platform in detail: availability, devices, capabilities, owning plugin."""
    with user_errors():
        discovery = get_discovery()
        ensure_registered(discovery)
        owner = discovery.platform_owner.get(name)
        if owner is None:
            from tessera.discovery import select_platform

            select_platform(name, discovery)  # raises the precise error for broken / unknown names
            raise PlatformError(f"unknown platform {name!r}")
        report = next(
            p
            for r in discovery.reports()
            if r.plugin == owner.report.plugin
            for p in r.platforms
            if p.name == name
        )
    distributed = _distributed(discovery.platforms.get(name))
    if as_json:
        data = report.model_dump(mode="json")
        data["distributed"] = distributed
        data["plugin"] = owner.report.plugin
        data["distribution"], data["version"] = owner.report.distribution, owner.report.version
        print_json(data)
        return
    console.print(
        f"[bold]{report.name}[/] from plugin {owner.report.plugin} ({owner.report.distribution} {owner.report.version})"
    )
    console.print(f"available: {report.available} - {report.reason}")
    console.print(f"device type: {report.device_type}, priority {report.priority}")
    for d in report.devices:
        console.print(
            f"device {d.index}: {d.name} [{d.canonical_name}] arch {d.arch}, {human_bytes(d.memory_total)}, "
            f"units {d.compute_units}, driver {d.driver or '-'}, runtime {d.runtime or '-'}"
        )
    if report.capabilities:
        console.print("capabilities:")
        for line in capability_lines(report.capabilities):
            console.print(f"  {line}", highlight=False)
    if distributed is not None:
        usable = "usable" if distributed["usable"] else "[yellow]not usable[/]"
        console.print(
            f"distributed backend: {distributed['backend']}, {usable} ({escape(distributed['reason'])})"
        )


def _distributed(platform) -> dict | None:
    """The platform's torch.distributed backend and whether tensor parallelism can use it here."""
    from tessera.distributed import backend_status

    if platform is None:
        return None
    try:
        backend, usable, reason = backend_status(platform)
    except Exception as exc:  # noqa: BLE001 - a platform that fails here is reported, not fatal
        return {"backend": "?", "usable": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {"backend": backend, "usable": usable, "reason": reason}

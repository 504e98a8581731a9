"""What a certificate covers, against what is installed and claimed now: the distributions whose kernels may run
on its platform, and the dtypes the platform claims. Either growing past what was tested makes it stale."""

from __future__ import annotations

from tessera.conformance.report import ConformanceReport


def untested_dtypes(platform_name: str, scope: str, data: bytes) -> tuple[str, str]:
    """A complete run certifies the dtypes it ran: a platform that now claims another (a CPU override changed, a
    driver that gained bf16) is not covered by it. Skipped where the platform cannot be asked here."""
    from tessera import discovery

    platform = discovery.get_discovery().platforms.get(platform_name)
    if scope != "complete" or platform is None:
        return "verified", ""
    try:
        claimed = set(platform.capabilities(0).dtypes) if platform.availability().available else set()
    except Exception:  # noqa: BLE001 - a platform that cannot say is not asked
        return "verified", ""
    report = ConformanceReport.model_validate_json(data)
    tested = {r.dtype for r in report.results if r.level == "op" and r.status != "skip"}
    new = sorted(claimed - tested)
    if tested and new:
        return "stale", (f"{platform_name} now claims {', '.join(new)}, which this certificate did not test "
                         "(it tested " + ", ".join(sorted(tested)) + "); run the suite again")  # fmt: skip
    return "verified", ""


def candidate_distributions(platform: str) -> set[str]:
    """The distributions installed now whose kernels may run on ``platform``: those registering a kernel for it
    (or for every platform), and the one providing the platform."""
    from tessera import discovery, kernel_registry

    found = discovery.get_discovery()
    out = {owner.report.distribution or owner.report.plugin for name, owner in found.platform_owner.items()
           if name == platform}  # fmt: skip
    for kernel in kernel_registry.get_registry(found).kernels():
        if kernel.platforms is None or platform in kernel.platforms:
            out.add(kernel.distribution)
    return out

"""Timing and the device's limits, for the CLI's imports: they live in :mod:`tessera.pluggable_layers.measure`
(the one measurement module the tuner, the benches and the conformance suite share)."""

from tessera.pluggable_layers.measure import measure_limits, median_ms, median_ms_graph

__all__ = ["measure_limits", "median_ms", "median_ms_graph"]

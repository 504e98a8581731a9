"""Conformance levels beyond single ops: the platform contract, layers, and tiny models."""

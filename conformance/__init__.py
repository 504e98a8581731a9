"""The Tessera conformance suite: certifies a plugin's kernels on its device."""

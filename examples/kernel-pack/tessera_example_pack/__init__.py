"""A template Tessera kernel pack (see README.md): copy this folder, rename the package, replace the kernel."""

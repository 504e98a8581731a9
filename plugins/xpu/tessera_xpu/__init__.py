"""tessera-xpu: the Intel GPU platform plugin for Tessera (torch.xpu, no IPEX)."""

__version__ = "0.1.0"

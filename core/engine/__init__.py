"""The hardware-neutral engine: requests, KV-cache manager, scheduler, model runner, engine loop."""

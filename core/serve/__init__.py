"""The OpenAI-compatible server: an engine thread (AsyncLLM), FastAPI routes, metrics."""

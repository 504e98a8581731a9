"""LLM: the offline API, shaped like vLLM's so that code ports with an import change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from tessera.config import EngineConfig
from tessera.engine.llm_engine import LLMEngine
from tessera.errors import ConfigError
from tessera.outputs import RequestOutput
from tessera.progress import PromptProgress
from tessera.sampling_params import SamplingParams


def make_config(**kwargs: Any) -> EngineConfig:
    """An EngineConfig, with pydantic's validation errors turned into one clear ConfigError."""
    try:
        return EngineConfig(**kwargs)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid engine config: {problems}") from None


class LLM:
    """``LLM(model=DIR, dtype=..., platform=..., **config).generate(prompts, sampling_params)``."""

    def __init__(self, model: str, dtype: str = "auto", platform: str | None = None, **config: Any) -> None:
        self.engine = LLMEngine(make_config(model=str(model), dtype=dtype, platform=platform, **config))

    def generate(
        self,
        prompts: str | dict | Sequence[str | dict],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        use_tqdm: bool = True,
    ) -> list[RequestOutput]:
        """Generate for every prompt; returns one RequestOutput per prompt, in prompt order.

        ``use_tqdm`` shows a progress bar on stderr (prompts done, input and output tokens a second).
        """
        if isinstance(prompts, str | dict):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts:
            raise ConfigError("generate() got an empty prompt list")
        params = sampling_params or SamplingParams()
        params_list = list(params) if isinstance(params, Sequence) else [params] * len(prompts)
        if len(params_list) != len(prompts):
            raise ConfigError(f"{len(params_list)} sampling params for {len(prompts)} prompts")
        ids = []
        try:
            for prompt, p in zip(prompts, params_list, strict=True):
                ids.append(self.engine.add_request(prompt, p))
        except Exception:
            for request_id in ids:
                self.engine.discard(request_id)
            raise
        results: dict[str, RequestOutput] = {}
        with PromptProgress(len(ids), enabled=use_tqdm) as progress:
            while self.engine.has_unfinished():
                for out in self.engine.step():
                    if out.finished:
                        results[out.request_id] = out
                        self.engine.release(out.request_id)
                        progress.finished(out)
        return [results[i] for i in ids]

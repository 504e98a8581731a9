"""LLM: the offline API, shaped like vLLM's so that code ports with an import change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from tessera.config import EngineConfig
from tessera.engine.llm_engine import LLMEngine
from tessera.errors import ConfigError, TesseraError
from tessera.outputs import RequestOutput
from tessera.progress import PromptProgress
from tessera.sampling_params import SamplingParams, to_sampling_params


def make_config(**kwargs: Any) -> EngineConfig:
    """An EngineConfig, with pydantic's validation errors turned into one clear ConfigError."""
    try:
        return EngineConfig(**kwargs)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid engine config: {problems}") from None


class LLM:
    """``LLM(model=DIR, dtype=..., platform=..., **config).generate(prompts, sampling_params)``."""

    def __init__(self, model: str, dtype: str = "auto", platform: str | None = None, **config: Any) -> None:
        self.engine = LLMEngine(make_config(model=str(model), dtype=dtype, platform=platform, **config))

    def generate(
        self,
        prompts: str | dict | Sequence[str | dict | list[int]],
        sampling_params: SamplingParams | dict | Sequence[SamplingParams | dict] | None = None,
        use_tqdm: bool = True,
    ) -> list[RequestOutput]:
        """Generate for every prompt; returns one RequestOutput per prompt, in prompt order.

        Each request stands alone. A prompt (or its entry of a list of sampling params)
        that is invalid is not run: its RequestOutput is finished with
        ``outputs[0].finish_reason == "error"``, no tokens, and the reason in
        ``RequestOutput.error``; the other prompts are served. A request whose step
        fails on the device (a kernel raising) ends the same way, with the cause in
        ``error``. Only a call that cannot be read at all raises ConfigError: an empty
        prompt list, a count of sampling params that does not match the prompts, or one
        shared ``sampling_params`` that is invalid. A params dict is validated into
        SamplingParams. ``use_tqdm`` shows a progress bar on stderr (prompts done, input and output
        tokens a second).
        """
        if isinstance(prompts, str | dict):
            prompts = [prompts]
        if not isinstance(prompts, Sequence):
            raise ConfigError(f"generate() takes a prompt or a list of prompts (text, token ids or dicts), got "
                              f"{type(prompts).__name__}")  # fmt: skip
        prompts = list(prompts)
        if not prompts:
            raise ConfigError("generate() got an empty prompt list")
        if sampling_params is None or isinstance(sampling_params, SamplingParams | dict):
            params_list = [to_sampling_params(sampling_params)] * len(prompts)
        else:
            params_list = list(sampling_params)
        if len(params_list) != len(prompts):
            raise ConfigError(f"{len(params_list)} sampling params for {len(prompts)} prompts")
        ids, results = self._add_all(prompts, params_list)
        try:
            with PromptProgress(len(ids), enabled=use_tqdm) as progress:
                for out in results.values():
                    progress.finished(out)
                while self.engine.has_unfinished():
                    for out in self.engine.step(finished_only=True):
                        if out.finished:
                            results[out.request_id] = out
                            self.engine.release(out.request_id)
                            progress.finished(out)
        except BaseException:
            for request_id in ids:  # leave the engine clean for the next call
                self.engine.discard(request_id)
            raise
        return [results[i] for i in ids]

    def chat(
        self,
        messages: Sequence[dict] | Sequence[Sequence[dict]],
        sampling_params: SamplingParams | dict | Sequence[SamplingParams | dict] | None = None,
        use_tqdm: bool = True,
        chat_template: str | None = None,
        add_generation_prompt: bool = True,
    ) -> list[RequestOutput]:
        """Generate a reply to one conversation (a list of ``{"role", "content"}`` messages) or to each of a
        list of conversations, rendered with the checkpoint's chat template (or the Jinja file
        ``chat_template``). A checkpoint without a template raises ConfigError saying what to do."""
        from tessera.chat import chat_prompt, load_chat_template, require_template

        template = require_template(
            load_chat_template(self.engine.spec.path, chat_template), self.engine.spec.path
        )
        if not isinstance(messages, Sequence) or isinstance(messages, str):
            raise ConfigError(
                f"chat() takes a list of messages (or of conversations), got {type(messages).__name__}"
            )
        conversations = [messages] if messages and isinstance(messages[0], dict) else list(messages)
        if not conversations:
            raise ConfigError("chat() got no conversation; pass a list of messages")
        prompts = [
            chat_prompt(template, self.engine.tokenizer, c, add_generation_prompt) for c in conversations
        ]
        return self.generate(prompts, sampling_params, use_tqdm=use_tqdm)

    def _add_all(self, prompts: list, params_list: list) -> tuple[list[str], dict[str, RequestOutput]]:
        """Queue every valid request; a refused one gets its error output at once."""
        ids: list[str] = []
        results: dict[str, RequestOutput] = {}
        for prompt, p in zip(prompts, params_list, strict=True):
            try:
                ids.append(self.engine.add_request(prompt, p))
            except TesseraError as exc:
                out = self.engine.rejected(prompt, exc)
                ids.append(out.request_id)
                results[out.request_id] = out
        return ids, results

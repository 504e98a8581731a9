"""Completions and chat completions: admission, then one JSON body or a stream of OpenAI chunks.

A request with several prompts (completions) or ``n`` choices becomes several
choices; choice ``i * n + c.index`` is completion ``c`` of prompt ``i``. Streams of
several prompts are merged as their tokens come. Whatever ends a response early (a
client gone, an error) aborts every engine request behind it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tessera.errors import ConfigError
from tessera.outputs import CompletionOutput, RequestOutput
from tessera.serve.async_engine import AsyncLLM, EngineDeadError, RequestStream
from tessera.serve.logprobs import chat_logprobs, completion_logprobs, prompt_logprobs_json
from tessera.serve.metrics import Metrics
from tessera.serve.protocol import ChatRequest, CompletionRequest, ServeError


@dataclass
class ServerState:
    engine: AsyncLLM
    model_name: str
    model_dir: str
    template: Any  # tessera.chat.ChatTemplate | None
    metrics: Metrics
    api_key: str | None = None
    max_waiting: int | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def max_model_len(self) -> int:
        return self.engine.max_model_len


async def admit(
    state: ServerState, prompts: list, params, strict_max_tokens: bool = False
) -> list[RequestStream]:
    """Queue one engine request per prompt; a refusal (400, 503) leaves nothing queued. ``strict_max_tokens``:
    the request named its max_tokens, so one past the context is a 400 (OpenAI's), not clamped."""
    waiting = state.engine.num_waiting
    if state.max_waiting is not None and waiting + len(prompts) > state.max_waiting:
        state.metrics.rejected += 1
        raise ServeError(503, f"the server is busy: {waiting} requests wait (--max-waiting {state.max_waiting}); "
                         "retry later", code="server_busy")  # fmt: skip
    streams: list[RequestStream] = []
    try:
        for prompt in prompts:
            streams.append(
                await state.engine.add_request(prompt, params, strict_max_tokens=strict_max_tokens)
            )
    except ConfigError as exc:  # admission's RequestError names the field at fault
        raise ServeError(400, str(exc), getattr(exc, "param", None)) from None
    except EngineDeadError as exc:
        raise ServeError(503, str(exc), code="engine_dead") from None
    finally:
        if len(streams) < len(prompts):
            for s in streams:
                s.abort()
    return streams


def _checked(item: RequestOutput | Exception) -> RequestOutput:
    if isinstance(item, Exception):
        raise ServeError(503 if isinstance(item, EngineDeadError) else 500, str(item))
    if item.error is not None and item.finished:
        raise ServeError(500, f"the request failed: {item.error}", code="engine_error")
    return item


async def merged(streams: list[RequestStream]) -> AsyncIterator[tuple[int, RequestOutput]]:
    """(prompt index, delta output) of every stream as they come; closing this aborts what is left."""
    if len(streams) == 1:  # the common case, without a task in between
        try:
            while True:
                try:
                    out = await streams[0].__anext__()
                except StopAsyncIteration:
                    return
                except Exception as exc:  # noqa: BLE001 - shaped as the reader's error
                    out = exc
                yield 0, _checked(out)
        finally:
            streams[0].abort()
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, stream: RequestStream) -> None:
        try:
            async for out in stream:
                queue.put_nowait((i, out))
        except Exception as exc:  # noqa: BLE001 - handed to the reader
            queue.put_nowait((i, exc))
        queue.put_nowait((i, None))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            i, item = await queue.get()
            if item is None:
                remaining -= 1
            else:
                yield i, _checked(item)
    finally:
        for t in tasks:
            t.cancel()
        for s in streams:
            s.abort()


@dataclass
class Choice:
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: Any = None

    def add(self, c: CompletionOutput) -> None:
        self.text += c.text
        self.token_ids += c.token_ids
        self.logprobs += getattr(c, "logprobs", None) or []
        self.finish_reason = c.finish_reason or self.finish_reason
        self.stop_reason = getattr(c, "stop_reason", None)


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


class Job:
    """One completions or chat request in flight: its streams and how to shape its answer."""

    def __init__(
        self, state: ServerState, request: CompletionRequest | ChatRequest, n: int, chat: bool
    ) -> None:
        self.state, self.request, self.n, self.chat = state, request, n, chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.object = "chat.completion" if chat else "text_completion"
        self.created = int(time.time())
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.want_logprobs = (request.logprobs is not None) if not chat else bool(request.logprobs)
        self.strict_max_tokens = (
            request.max_tokens is not None or getattr(request, "max_completion_tokens", None) is not None
        )

    def _logprobs(self, token_ids: list[int], entries: list) -> dict | None:
        if not self.want_logprobs or not entries:
            return None
        # chat: exactly top_logprobs alternatives (completions' logprobs=N also keeps the sampled token)
        if self.chat:
            return chat_logprobs(self.state.tokenizer, token_ids, entries, self.request.top_logprobs or 0)
        return completion_logprobs(self.state.tokenizer, token_ids, entries)

    def _count(self, out: RequestOutput) -> None:
        self.completion_tokens += sum(len(c.token_ids) for c in out.outputs)
        if out.finished:
            self.prompt_tokens += len(out.prompt_token_ids)

    async def collect(self, streams: list[RequestStream]) -> dict:
        choices: dict[int, Choice] = {}
        prompts: dict[int, list[int]] = {}
        prompt_lps: dict[int, list] = {}
        async for i, out in merged(streams):
            self._count(out)
            prompts[i] = out.prompt_token_ids
            if out.prompt_logprobs:
                prompt_lps[i] = prompt_logprobs_json(out.prompt_logprobs)
            for c in out.outputs:
                choices.setdefault(i * self.n + c.index, Choice()).add(c)
        body = []
        for k in sorted(choices):
            ch = choices[k]
            entry: dict[str, Any] = {"index": k, "logprobs": self._logprobs(ch.token_ids, ch.logprobs),
                                     "finish_reason": ch.finish_reason, "stop_reason": ch.stop_reason}  # fmt: skip
            if self.chat:
                entry["message"] = {"role": "assistant", "content": ch.text}
            else:
                entry["text"] = ch.text
            if self.request.return_token_ids:
                entry.update(token_ids=ch.token_ids, prompt_token_ids=prompts.get(k // self.n))
            if not self.chat and self.request.prompt_logprobs is not None:
                entry["prompt_logprobs"] = prompt_lps.get(k // self.n)
            body.append(entry)
        answer = {"id": self.id, "object": self.object, "created": self.created, "model": self.state.model_name,
                  "choices": body, "usage": usage(self.prompt_tokens, self.completion_tokens)}  # fmt: skip
        if self.chat and self.request.prompt_logprobs is not None:  # vLLM's place for them in a chat answer
            answer["prompt_logprobs"] = prompt_lps.get(0)
        return answer

    def _chunk(self, choices: list[dict], with_usage: bool) -> dict:
        chunk = {"id": self.id, "object": self.object + ("" if not self.chat else ".chunk"), "created": self.created,
                 "model": self.state.model_name, "choices": choices}  # fmt: skip
        if with_usage:
            chunk["usage"] = None
        return chunk

    async def chunks(self, streams: list[RequestStream]) -> AsyncIterator[dict]:
        options = self.request.stream_options
        with_usage = bool(options and options.include_usage)
        if self.chat:
            first = [{"index": k, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                      "finish_reason": None} for k in range(len(streams) * self.n)]  # fmt: skip
            yield self._chunk(first, with_usage)
        async for i, out in merged(streams):
            self._count(out)
            choices = [self._stream_choice(i * self.n + c.index, c) for c in out.outputs]
            choices = [c for c in choices if c is not None]
            if out.prompt_logprobs and self.request.prompt_logprobs is not None:
                lps = prompt_logprobs_json(out.prompt_logprobs)  # once per prompt, with its first tokens
                if self.chat:
                    yield {**self._chunk(choices, with_usage), "prompt_logprobs": lps}
                    continue
                for c in choices:
                    c["prompt_logprobs"] = lps
            if choices:
                yield self._chunk(choices, with_usage)
        if with_usage:
            yield {**self._chunk([], False), "usage": usage(self.prompt_tokens, self.completion_tokens)}

    def _stream_choice(self, k: int, c: CompletionOutput) -> dict | None:
        if not c.text and not c.finish_reason and not c.token_ids:
            return None
        lps = self._logprobs(c.token_ids, getattr(c, "logprobs", None) or [])
        entry = {"index": k, "logprobs": lps, "finish_reason": c.finish_reason,
                 "stop_reason": getattr(c, "stop_reason", None)}  # fmt: skip
        if self.chat:
            entry["delta"] = {"content": c.text} if c.text else {}
        else:
            entry["text"] = c.text
        if self.request.return_token_ids:
            entry["token_ids"] = c.token_ids
        return entry

"""The OpenAI request bodies the server accepts, their errors, and the one mapping to SamplingParams.

Unknown fields are refused with a 400 naming them (``extra="forbid"``), as for
SamplingParams offline: a misspelt ``max_token`` silently ignored would generate 16
tokens and look like a bug of the engine. The fields of OpenAI's API that this server
does not implement (tools, ``echo``, ``best_of`` above ``n``, ...) are accepted by name
and refused with a 400 saying so when set to anything but their neutral value.
vLLM's extra sampling fields (``top_k``, ``min_p``, ``repetition_penalty``,
``ignore_eos``, ...) are accepted at the top level of the body, as vLLM accepts them
(the ``openai`` client sends them through ``extra_body``).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tessera.errors import describe_validation_error
from tessera.sampling_params import SamplingParams

MAX_LOGPROBS = 20
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               500: "internal_server_error", 503: "service_unavailable"}  # fmt: skip


class ServeError(Exception):
    """An HTTP error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        kind = ERROR_TYPES.get(self.status, "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False
    continuous_usage_stats: bool = False


class _Sampling(BaseModel):
    """Fields shared by completions and chat: OpenAI's, then vLLM's extras."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=128)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # vLLM's extras
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0)
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool | None = None
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool | None = None
    skip_special_tokens: bool | None = None
    prompt_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    return_token_ids: bool = False  # vLLM's: each choice also carries its token ids (and prompt_token_ids)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    best_of: int | None = Field(None, ge=1)
    suffix: str | None = None


class ChatRequest(_Sampling):
    messages: list[dict[str, Any]]
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    add_generation_prompt: bool = True


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str | None = None
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = True
    add_special_tokens: bool = True


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str | None = None
    tokens: list[int]


def parse(model: type[BaseModel], data: Any) -> Any:
    """``data`` validated into ``model``; the first problem becomes a 400 naming the field."""
    if not isinstance(data, dict):
        raise ServeError(400, f"the request body must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        if first["type"] == "extra_forbidden":
            raise ServeError(400, f"unknown field {param!r}: this server refuses fields it does not know "
                             "(check the spelling; vLLM's sampling extras go at the top level)", param) from None  # fmt: skip
        raise ServeError(400, f"invalid request: {describe_validation_error(exc)}", param) from None


#: Request fields that become SamplingParams fields of the same name, and their neutral values: a field
#: SamplingParams lacks (in this version) is refused with a 400 unless it is left at its neutral value.
NEUTRAL: dict[str, Any] = {"n": 1, "stop": None, "logprobs": None, "prompt_logprobs": None, "presence_penalty": 0.0,
                           "frequency_penalty": 0.0, "repetition_penalty": 1.0, "min_p": 0.0, "logit_bias": None,
                           "include_stop_str_in_output": False, "skip_special_tokens": True, "top_k": 0,
                           "min_tokens": 0, "ignore_eos": False, "stop_token_ids": None, "seed": None,
                           "temperature": None, "top_p": None, "max_tokens": None}  # fmt: skip


def unsupported(field: str, value: Any) -> ServeError:
    return ServeError(400, f"{field}={value!r} is not supported by this server version", field)


def to_sampling_params(
    request: CompletionRequest | ChatRequest, default_max_tokens: int | None
) -> SamplingParams:
    """The one mapping of an OpenAI request to SamplingParams: each field by its name, where SamplingParams
    has it; a set field it lacks is a 400 "not supported by this server version". ``default_max_tokens``
    applies when the request gives none (None: SamplingParams' own default)."""
    values = {name: getattr(request, name) for name in NEUTRAL if name != "logprobs"}
    if isinstance(request, ChatRequest):
        values["max_tokens"] = request.max_completion_tokens or request.max_tokens
        values["logprobs"] = (request.top_logprobs or 0) if request.logprobs else None
    else:
        values["logprobs"] = request.logprobs
    if values["logit_bias"]:
        values["logit_bias"] = _token_bias(values["logit_bias"])
    if values["max_tokens"] is None:
        values["max_tokens"] = default_max_tokens
    fields = SamplingParams.model_fields
    kwargs = {}
    for name, value in values.items():
        if value is None or (value == NEUTRAL[name] and name not in fields):
            continue
        if name not in fields:
            raise unsupported(name, value)
        kwargs[name] = value
    try:
        return SamplingParams(**kwargs)
    except ValidationError as exc:
        first = exc.errors()[0]
        # a model-level check has no location: the first request field its message names is the param
        named = [n for n in sorted(kwargs, key=len, reverse=True) if re.search(rf"\b{n}\b", first["msg"])]
        param = ".".join(str(p) for p in first["loc"]) or (named[0] if named else None)
        raise ServeError(
            400, f"invalid sampling parameters: {describe_validation_error(exc)}", param
        ) from None


def _token_bias(bias: dict[str, float]) -> dict[int, float]:
    try:
        return {int(k): float(v) for k, v in bias.items()}
    except ValueError:
        raise ServeError(
            400, "logit_bias keys must be token ids (integers as strings)", "logit_bias"
        ) from None


def check_unimplemented(request: CompletionRequest | ChatRequest) -> None:
    """OpenAI fields this server does not implement, refused when set; fields that mean nothing without another."""
    if request.stream_options is not None and not request.stream:
        raise ServeError(400, "stream_options applies only to streamed responses: set stream to true or drop it",
                         "stream_options")  # fmt: skip
    if isinstance(request, CompletionRequest):
        if request.echo:
            raise unsupported("echo", True)
        if request.suffix:
            raise unsupported("suffix", request.suffix)
        if request.best_of not in (None, request.n):
            raise unsupported("best_of", request.best_of)
    else:
        if request.tools:
            raise unsupported("tools", "[...]")
        if request.tool_choice not in (None, "none"):
            raise unsupported("tool_choice", request.tool_choice)
        if request.response_format and request.response_format.get("type") != "text":
            raise unsupported("response_format", request.response_format)
        if not request.messages:
            raise ServeError(400, "messages is empty: give at least one message", "messages")
        if request.top_logprobs is not None and not request.logprobs:
            raise ServeError(400, "top_logprobs needs logprobs set to true", "top_logprobs")

"""Wire models of the OpenAI routes (msgspec: strict types, fast decode, unknown fields ignored as
OpenAI and llama-server do), and the request -> GenerationParams mapping."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from dmr.engine.protocol import SAMPLING_RANGES, GenerationParams
from dmr.errors import InvalidRequestError


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _Sampling(msgspec.Struct, kw_only=True):
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    logit_bias: dict[str, float] | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    grammar: str | None = None
    ignore_eos: bool = False
    user: str | None = None

    def logprobs_asked(self) -> int | None:
        """GenerationParams.logprobs (None: not asked for); each dialect's request says how it asks."""
        return None


class ChatCompletionRequest(_Sampling, kw_only=True):
    messages: list[dict[str, Any]] | None = None
    max_completion_tokens: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    #: Tokens of reasoning allowed (0: none, -1: no limit; None: the model's configured budget). The other
    #: dialects set it from their own fields (Anthropic `thinking`, Ollama `think`, Responses `reasoning`).
    reasoning_budget: int | None = None

    def logprobs_asked(self) -> int | None:
        """GenerationParams.logprobs: None unless `logprobs` is true; then how many alternatives."""
        _check_range("top_logprobs", self.top_logprobs, 0, MAX_TOP_LOGPROBS)
        if self.top_logprobs and not self.logprobs:
            raise _field_error("top_logprobs", "top_logprobs needs logprobs: true")
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Sampling, kw_only=True):
    prompt: Any = None  # str | list[str] | list[int] | list[list[int]]: checked by text_inputs
    echo: bool = False
    suffix: str | None = None
    response_format: dict[str, Any] | None = None
    logprobs: int | None = None  # the legacy shape: how many alternatives per token

    def logprobs_asked(self) -> int | None:
        _check_range("logprobs", self.logprobs, 0, MAX_TOP_LOGPROBS)
        return self.logprobs


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    input: Any = None  # str | list[str] | list[int] | list[list[int]]: checked by text_inputs
    encoding_format: str = "float"
    dimensions: int | None = None
    user: str | None = None


class RerankRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    query: str | None = None
    documents: list[str | dict[str, Any]] | None = None
    top_n: int | None = None
    return_documents: bool = False
    # vLLM's /score: text_1 vs text_2
    text_1: str | None = None
    text_2: str | list[str] | None = None


def text_inputs(value: Any, name: str) -> list[str | list[int]]:
    """OpenAI's prompt/input union -> a list of texts or token lists (400 on anything else)."""

    def bad(msg: str) -> InvalidRequestError:
        return _field_error(name, f"{name} {msg}")

    def is_tokens(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(type(t) is int for t in v)

    if isinstance(value, str):
        if not value:
            raise bad("must not be empty")
        return [value]
    if not isinstance(value, list) or not value:
        raise bad("must be a non-empty string, list of strings, token ids or list of token id lists")
    if is_tokens(value):
        return [list(value)]
    out: list[str | list[int]] = []
    for item in value:
        if isinstance(item, str) and item:
            out.append(item)
        elif is_tokens(item):
            out.append(list(item))
        else:
            raise bad("items must be non-empty strings or non-empty lists of token ids")
    return out


#: What a request body nested deeper than the JSON decoders can follow is told (a RecursionError was a 500).
TOO_DEEP = "request body is nested too deeply"


def parse_json(body: bytes) -> Any:
    """Any JSON document (the management routes); a body that is not one is a 400."""
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidRequestError(TOO_DEEP) from None
    except ValueError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None


def decode(body: bytes, typ: type[Any]) -> Any:
    """Body -> wire model; any decode or type error is a 400 naming the field."""
    if not body.strip():
        raise InvalidRequestError("request body is empty; expected a JSON object")
    try:
        req = msgspec.json.decode(body, type=typ)
    except msgspec.ValidationError as exc:
        param = None
        text = str(exc)
        if " - at `$." in text:
            param = text.rsplit(" - at `$.", 1)[1].rstrip("`")
        raise _field_error(param, f"invalid request: {text}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequestError(TOO_DEEP) from None
    if getattr(req, "model", None) in (None, ""):
        raise _field_error("model", "model is required")
    return req


#: The largest max_tokens a request may ask for (-1 asks for no limit).
MAX_TOKENS_LIMIT = 1 << 30
#: The most alternatives per token `top_logprobs` (chat) and `logprobs` (completions) may ask for, as OpenAI.
MAX_TOP_LOGPROBS = 20


def _field_error(name: str | None, message: str) -> InvalidRequestError:
    """A 400 naming the request field it is about (OpenAI's `param`)."""
    err = InvalidRequestError(message)
    err.param = name  # type: ignore[attr-defined]
    return err


def _check_range(name: str, value: float | int | None, lo: float, hi: float) -> None:
    if value is not None and not (lo <= value <= hi):
        shown = [str(b) if isinstance(b, int) else f"{b:g}" for b in (lo, hi)]  # 1073741824, not 1.07374e+09
        raise _field_error(name, f"{name} must be between {shown[0]} and {shown[1]}, got {value}")


def generation_params(
    req: _Sampling,
    defaults: dict[str, Any],
    *,
    max_tokens: int | None,
    grammar: str | None,
    grammar_triggers: tuple[str, ...] = (),
    vocab_size: int | None = None,
) -> GenerationParams:
    """Request sampling fields over the model's configured defaults over GenerationParams' own."""
    if req.n not in (None, 1):
        raise _field_error("n", "only n=1 is supported")
    for name in (
        "temperature",
        "top_p",
        "min_p",
        "top_k",
        "presence_penalty",
        "frequency_penalty",
        "repeat_penalty",
    ):
        _check_range(name, getattr(req, name), *SAMPLING_RANGES[name])
    _check_range("repeat_last_n", req.repeat_last_n, *SAMPLING_RANGES["penalty_last_n"])
    if max_tokens == -1:  # llama.cpp's "no limit" (n_predict -1)
        max_tokens = None
    _check_range("max_tokens", max_tokens, 0, MAX_TOKENS_LIMIT)
    _check_range("seed", req.seed, -(1 << 63), (1 << 64) - 1)
    kw: dict[str, Any] = dict(defaults)
    for name in (
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repeat_penalty",
    ):
        v = getattr(req, name)
        if v is not None:
            kw[name] = v
    if req.repeat_last_n is not None:
        kw["penalty_last_n"] = req.repeat_last_n
    if req.seed is not None:
        kw["seed"] = req.seed & 0xFFFFFFFF
    if req.logit_bias:
        bias: dict[int, float] = {}
        for k, v in req.logit_bias.items():
            try:
                tok = int(k)
            except ValueError:
                raise InvalidRequestError(f"logit_bias key {k!r} is not a token id") from None
            if tok < 0 or (vocab_size is not None and tok >= vocab_size):
                raise InvalidRequestError(f"logit_bias token {tok} is out of range")
            bias[tok] = max(-100.0, min(100.0, float(v)))
        kw["logit_bias"] = bias
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    if len(stop) > 16 or any(not s for s in stop):
        raise InvalidRequestError("stop must be at most 16 non-empty strings")
    kw["stop"] = stop
    kw["max_tokens"] = max_tokens
    kw["grammar"] = grammar
    kw["grammar_triggers"] = grammar_triggers
    kw["ignore_eos"] = req.ignore_eos
    kw["logprobs"] = req.logprobs_asked()
    return GenerationParams(**kw)

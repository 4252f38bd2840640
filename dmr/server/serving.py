"""What chat and text completions share, whatever the dialect: hold a model for the request, start
generation (errors known before the first byte become HTTP errors), collect the typed events into
transcripts or stream a renderer's chunks, abort on client disconnect, then release the model, record the
exchange and update metrics exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dmr.chat.events import ChatEvent, Transcript
from dmr.engine.protocol import Engine, FinishEvent, GenerationEvent, GenerationParams, Usage
from dmr.errors import AbortedError, ContextFullError, DmrError
from dmr.models.store import Model
from dmr.scheduling.loader import Runner
from dmr.server import sse
from dmr.server.errors import dialect_error_body, error_payload, error_response, sse_error_event
from dmr.server.state import ServerState

_T = TypeVar("_T")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def tokenize_prompt(engine: Engine, text: str) -> list[int]:
    """Tokenize a rendered prompt (the engine drops a second BOS and reuses earlier turns' exact tokens)."""
    return engine.tokenize_prompt(text)


def check_fits(engine: Engine, n_prompt: int) -> None:
    n_ctx = engine.n_ctx
    if n_prompt >= n_ctx:
        raise ContextFullError(
            f"the request exceeds the available context size: the prompt has {n_prompt} tokens and the "
            f"context holds {n_ctx}; shorten the prompt or raise the context size (dmr configure "
            "--context-size)",
            n_prompt,
            n_ctx,
        )


async def wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(request: Request, work: Awaitable[_T]) -> _T:
    """`work`'s result, or AbortedError (499) once the client has gone: the work is cancelled then, so an
    engine stops what nobody waits for any more (an abandoned embeddings batch ran on for 10 minutes)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        client_left = not task.done()
    finally:  # the client left, or this request itself was cancelled: the work stops either way
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if client_left:
        raise AbortedError("the client disconnected")
    return task.result()


@dataclass
class Exchange:
    """One inference request's bookkeeping, finished exactly once."""

    state: ServerState
    request: Request
    body: bytes
    model: Model
    ref: str
    runner: Runner
    endpoint: str
    dialect: str = "openai"  # whose error shape failures take, and what the recorder names
    t0: float = field(default_factory=time.perf_counter)
    t_first: float | None = None
    done: bool = False

    def first_token(self) -> None:
        if self.t_first is None:
            self.t_first = time.perf_counter()
            self.state.metrics.ttft.labels(self.ref).observe(self.t_first - self.t0)

    def finish(self, status: int, response: Any, error: str | None, usage: Usage | None) -> None:
        if self.done:
            return
        self.done = True
        st = self.state
        st.scheduler.release(self.runner)
        m = st.metrics
        now = time.perf_counter()
        m.requests.labels(self.ref, self.endpoint, str(status)).inc()
        m.latency.labels(self.ref, self.endpoint).observe(now - self.t0)
        if usage is not None:
            m.prompt_tokens.labels(self.ref).inc(usage.prompt_tokens)
            m.completion_tokens.labels(self.ref).inc(usage.completion_tokens)
            m.cached_tokens.labels(self.ref).inc(usage.cached_tokens)
            if self.t_first is not None and usage.completion_tokens > 1 and now > self.t_first:
                m.tps.labels(self.ref).observe((usage.completion_tokens - 1) / (now - self.t_first))
        st.record(self.request, self.model, self.ref, self.body, response, error, status, self.dialect)

    def fail(self, exc: BaseException) -> Response:
        status, payload = dialect_error_body(exc, self.dialect)
        self.finish(status, payload, str(exc), None)
        return error_response(exc, self.dialect)


async def hold_model(
    state: ServerState, request: Request, body: bytes, ref: str, endpoint: str, dialect: str = "openai"
) -> Exchange:
    model = await state.scheduler.resolve(ref)
    waiting = state.metrics.waiting.labels(ref)
    waiting.inc()
    try:
        runner = await state.scheduler.acquire(model, ref)
    finally:
        waiting.dec()
    return Exchange(state, request, body, model, ref, runner, endpoint, dialect)


async def collect_events(
    ex: Exchange,
    events: list[AsyncIterator[ChatEvent]],
    streams: list[AsyncIterator[GenerationEvent]],
) -> list[Transcript]:
    """Run each choice's events to their end into a Transcript; if the client goes away first, abort them
    all (one watcher). A failure after the first event raises here: nothing has been sent yet."""

    async def run(source: AsyncIterator[ChatEvent]) -> Transcript:
        transcript = Transcript()
        async for event in source:
            transcript.observe(event)
        if transcript.error is not None:
            raise transcript.error
        return transcript

    try:
        return list(await until_disconnect(ex.request, asyncio.gather(*(run(e) for e in events))))
    finally:
        for s in streams:
            await _close(s)


async def _close(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)  # async generators and the engines' streams have one
    if aclose is not None:
        await aclose()


def streaming_response(
    ex: Exchange,
    chunks: AsyncIterator[str],
    stream: AsyncIterator[GenerationEvent],
    summary: Callable[[], tuple[Any, Usage | None, Exception | None]],
    *,
    media_type: str = sse.MEDIA_TYPE,
    error_chunk: Callable[[BaseException], str] = sse_error_event,
) -> StreamingResponse:
    """A streamed response over `chunks` (a renderer's output: SSE unless `media_type` says otherwise, as
    Ollama's NDJSON). `summary()` says, once the chunks are done, what the response added up to: the
    recorded document, the usage and the error the events ended with (an error after the first byte is
    rendered as the dialect's error event; recorded with its status here). An exception of the renderer
    itself becomes the dialect's error chunk (`error_chunk`) too."""

    async def body() -> AsyncIterator[str]:
        status, error = 200, None
        try:
            async for chunk in chunks:
                yield chunk
        except asyncio.CancelledError:
            status, error = 499, "the client disconnected"
            raise
        except Exception as exc:
            status, error = error_payload(exc)[0], str(exc)
            yield error_chunk(exc)
        finally:
            await _close(stream)
            response, usage, failure = summary()
            if failure is not None and status == 200:
                status, error = error_payload(failure)[0], str(failure)
            ex.finish(status, response, error, usage)

    async def on_close() -> None:
        # The body generator may never start (client gone before the first byte): finish here too.
        if not ex.done:
            await _close(stream)
            response, usage, _ = summary()
            ex.finish(499, response, "the client disconnected", usage)

    return _ClosingStreamingResponse(body(), on_close, media_type=media_type, headers=sse.HEADERS)


class _ClosingStreamingResponse(StreamingResponse):
    def __init__(
        self, content: AsyncIterator[str], on_close: Callable[[], Awaitable[None]], **kw: Any
    ) -> None:
        super().__init__(content, **kw)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


async def guarded(ex: Exchange, start: Callable[[], Awaitable[Response]]) -> Response:
    """Run the endpoint body; an exception before the response exists releases the model and maps."""
    try:
        return await start()
    except DmrError as exc:
        return ex.fail(exc)
    except Exception as exc:
        return ex.fail(exc)


def start_generation(
    engine: Engine, tokens: list[int], params: GenerationParams, text: str | None = None
) -> AsyncIterator[GenerationEvent]:
    """`text`: the rendered prompt the tokens came from, so the next turn can reuse the answer's tokens."""
    check_fits(engine, len(tokens))
    if params.max_tokens == 0:  # nothing to generate (llama-server's n_predict 0): no engine work at all
        return _nothing(len(tokens))
    return engine.generate(tokens, params, text=text)


async def _nothing(n_prompt: int) -> AsyncIterator[GenerationEvent]:
    yield FinishEvent("length", Usage(n_prompt, 0, 0))

"""The typed events serving yields, whatever the dialect: each renderer (OpenAI SSE and JSON today; Ollama
NDJSON, Anthropic and Responses events next) turns these into bytes, and the recorder observes the same
events, so every dialect is rendered from one parse and recorded the same way.

Order, for one choice: any mix of ContentDelta / ReasoningDelta / tool-call events, then UsageReport, then
Finish; or, when the engine fails after the first event, ErrorEvent last (no UsageReport or Finish). A tool
call is ToolCallStart, zero or more ToolCallArgs (fragments of its arguments' JSON text), ToolCallEnd;
calls are numbered from 0 in the order the model wrote them and never overlap. When the request asked for
log-probabilities, each token's TokenLogprobsEvent comes just before the deltas of its text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dmr.engine.protocol import TokenLogprobs, Usage

#: "abort" when the client left (the request was cancelled in the engine)
FinishReason = Literal["stop", "length", "tool_calls", "abort"]


@dataclass(frozen=True, slots=True)
class ContentDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallArgs:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    index: int
    id: str
    name: str
    arguments: str  # the whole arguments JSON text, as the non-streaming response carries it


@dataclass(frozen=True, slots=True)
class UsageReport:
    usage: Usage


@dataclass(frozen=True, slots=True)
class TokenLogprobsEvent:
    """A generated token's log-probabilities (requests with logprobs): it comes before the deltas its text
    makes, so a renderer can put it on the chunk that carries them."""

    logprobs: TokenLogprobs


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    stop_sequence: str | None = None  # the request's stop string that ended the answer, if one did


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    error: Exception


ChatEvent = (
    ContentDelta
    | ReasoningDelta
    | ToolCallStart
    | ToolCallArgs
    | ToolCallEnd
    | UsageReport
    | TokenLogprobsEvent
    | Finish
    | ErrorEvent
)


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class Transcript:
    """What one choice's events add up to: the non-streaming response and the recorder read this."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    stop_sequence: str | None = None
    error: Exception | None = None
    logprobs: list[TokenLogprobs] = field(default_factory=list)

    def observe(self, event: ChatEvent) -> None:
        kind = type(event)
        if kind is ContentDelta:
            self.content.append(event.text)  # type: ignore[union-attr]
        elif kind is ReasoningDelta:
            self.reasoning.append(event.text)  # type: ignore[union-attr]
        elif isinstance(event, ToolCallEnd):
            self.tool_calls.append(ToolCall(event.id, event.name, event.arguments))
        elif isinstance(event, UsageReport):
            self.usage = event.usage
        elif isinstance(event, Finish):
            self.finish_reason = event.reason
            self.stop_sequence = event.stop_sequence
        elif isinstance(event, ErrorEvent):
            self.error = event.error
        elif isinstance(event, TokenLogprobsEvent):
            self.logprobs.append(event.logprobs)

    @property
    def text(self) -> str:
        return "".join(self.content)

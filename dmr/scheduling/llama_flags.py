"""The runtime flags the llama.cpp backend accepts in `_configure` (llama-server's names): its allow-list."""

from __future__ import annotations

from typing import Any

#: llama-server flag -> (EngineConfig field or "sampling:<param>", type). Everything else is refused.
RUNTIME_FLAGS: dict[str, tuple[str, type]] = {
    "-t": ("n_threads", int),
    "--threads": ("n_threads", int),
    "-tb": ("n_threads_batch", int),
    "--threads-batch": ("n_threads_batch", int),
    "-ngl": ("n_gpu_layers", int),
    "--gpu-layers": ("n_gpu_layers", int),
    "--n-gpu-layers": ("n_gpu_layers", int),
    "-b": ("n_batch", int),
    "--batch-size": ("n_batch", int),
    "-ub": ("n_ubatch", int),
    "--ubatch-size": ("n_ubatch", int),
    "-np": ("n_slots", int),
    "--parallel": ("n_slots", int),
    "-c": ("ctx_size", int),
    "--ctx-size": ("ctx_size", int),
    "-fa": ("flash_attn", str),
    "--flash-attn": ("flash_attn", str),
    "--spec-draft-n-max": ("spec_n_max", int),
    "--draft-max": ("spec_n_max", int),
    "--repeat-penalty": ("sampling:repeat_penalty", float),
    "--repeat-last-n": ("sampling:penalty_last_n", int),
    "--temp": ("sampling:temperature", float),
    "--temperature": ("sampling:temperature", float),
    "--top-k": ("sampling:top_k", int),
    "--top-p": ("sampling:top_p", float),
    "--min-p": ("sampling:min_p", float),
    "--presence-penalty": ("sampling:presence_penalty", float),
    "--frequency-penalty": ("sampling:frequency_penalty", float),
}
#: Switches without a value: flag -> (EngineConfig field, value).
SWITCH_FLAGS: dict[str, tuple[str, Any]] = {
    "-kvu": ("kv_unified", True),
    "--kv-unified": ("kv_unified", True),
    "--no-kv-unified": ("kv_unified", False),
}
#: Accepted and without effect here (always on, or decided elsewhere).
NOOP_FLAGS = {"--jinja", "--metrics", "-cb", "--cont-batching", "--no-webui", "--mlock", "--no-mmap"}

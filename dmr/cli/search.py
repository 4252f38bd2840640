"""`dmr search [TERM]`: models on Docker Hub's `ai/` namespace and on Hugging Face, as `docker model search`
finds them (Docker Hub lists the namespace by pull count and is filtered here; Hugging Face is asked for
models that llama.cpp or vLLM run, by downloads). The CLI asks the hubs itself: no server is involved.

DMR_DOCKER_HUB_URL and HF_ENDPOINT (huggingface_hub's variable) point it at other hosts.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import click
import httpx

from dmr.cli.output import print_json, table

DOCKER_HUB = "Docker Hub"
HUGGING_FACE = "HuggingFace"
#: Tags that say nothing about a model in the description built from them.
_GENERIC_TAGS = {"gguf", "transformers", "pytorch", "safetensors", "license:apache-2.0"}


@dataclass
class Result:
    name: str
    description: str
    downloads: int
    stars: int
    source: str
    official: bool
    updated_at: str
    backend: str


def _short(text: str, width: int = 50) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _hub_backend(name: str, description: str) -> str:
    text = f"{name} {description}".lower()
    vllm = "vllm" in text or "safetensors" in text
    llama = any(word in text for word in ("llama.cpp", "llamacpp", "llama-cpp", "gguf"))
    return "llama.cpp, vllm" if vllm and llama else "vllm" if vllm else "llama.cpp"


def search_docker_hub(client: httpx.Client, term: str, limit: int) -> list[Result]:
    base = os.environ.get("DMR_DOCKER_HUB_URL", "https://hub.docker.com").rstrip("/")
    url: str | None = f"{base}/v2/repositories/ai/"
    params: dict[str, Any] | None = {"page_size": min(limit, 100), "ordering": "-pull_count"}
    query = term.lower()
    out: list[Result] = []
    while url and len(out) < limit:
        r = client.get(url, params=params, headers={"Accept": "application/json"})
        _check(r, DOCKER_HUB)
        doc = r.json()
        for repo in doc.get("results") or []:
            name, desc = str(repo.get("name", "")), str(repo.get("description") or "")
            if repo.get("is_private") or (query and query not in name.lower() and query not in desc.lower()):
                continue
            namespace = str(repo.get("namespace") or "ai")
            out.append(
                Result(
                    f"{namespace}/{name}",
                    _short(desc),
                    int(repo.get("pull_count") or 0),
                    int(repo.get("star_count") or 0),
                    DOCKER_HUB,
                    namespace == "ai",
                    str(repo.get("last_updated") or ""),
                    _hub_backend(name, desc),
                )
            )
            if len(out) >= limit:
                break
        url, params = doc.get("next") or None, None  # `next` carries its own query string
    return out


def _hf_description(tags: list[str], pipeline: str | None) -> str:
    parts = [pipeline] if pipeline else []
    for tag in (t.lower() for t in tags):
        if tag in _GENERIC_TAGS:
            continue
        if tag.startswith(("llama", "mistral", "phi", "qwen")) or "instruct" in tag or "chat" in tag:
            parts.append(tag)
            if len(parts) >= 3:
                break
    return ", ".join(parts) or "AI model"


def search_hugging_face(client: httpx.Client, term: str, limit: int) -> list[Result]:
    base = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    params: dict[str, Any] = {
        "apps": "vllm,llama.cpp",
        "sort": "downloads",
        "direction": "-1",
        "limit": min(limit, 1000),
    }
    if term:
        params["search"] = term
    r = client.get(f"{base}/api/models", params=params, headers={"Accept": "application/json"})
    _check(r, HUGGING_FACE)
    out = []
    for m in r.json():
        if m.get("private"):
            continue
        tags = [str(t) for t in m.get("tags") or []]
        backend = "llama.cpp" if "gguf" in tags else "vllm" if "safetensors" in tags else "unknown"
        out.append(
            Result(
                "hf.co/" + str(m.get("modelId") or m.get("id")),
                _short(_hf_description(tags, m.get("pipeline_tag"))),
                int(m.get("downloads") or 0),
                int(m.get("likes") or 0),
                HUGGING_FACE,
                False,
                str(m.get("createdAt") or ""),
                backend,
            )
        )
    return out[:limit]


def _check(r: httpx.Response, source: str) -> None:
    if r.status_code == 429:
        raise click.ClickException(f"rate limited by {source}, please try again later")
    if r.status_code != 200:
        raise click.ClickException(f"unexpected status from {source}: {r.status_code}")


@click.command()
@click.argument("term", required=False, default="")
@click.option(
    "--source",
    type=click.Choice(["all", "dockerhub", "huggingface"]),
    default="all",
    show_default=True,
    help="Where to search.",
)
@click.option(
    "-n", "--limit", type=click.IntRange(1, 1000), default=32, show_default=True, help="Results per source."
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def search(term: str, source: str, limit: int, as_json: bool) -> None:
    """Search for models on Docker Hub (ai/ namespace) and Hugging Face."""
    results: list[Result] = []
    with httpx.Client(timeout=30, follow_redirects=True) as client:
        try:
            if source in ("all", "dockerhub"):
                results += search_docker_hub(client, term, limit)
            if source in ("all", "huggingface"):
                results += search_hugging_face(client, term, limit)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"search failed: {exc}") from None
    if as_json:
        print_json([asdict(r) for r in results])
        return
    if not results:
        click.echo("No models found.")
        return
    rows = [[r.name, r.description, r.backend, f"{r.downloads:,}", str(r.stars), r.source] for r in results]
    click.echo(table(["NAME", "DESCRIPTION", "BACKEND", "DOWNLOADS", "STARS", "SOURCE"], rows))

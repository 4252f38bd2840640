"""Hugging Face references (`hf.co/org/repo[:quant]`): list, select, download, package into the store.

Follows DMR (reference §5): the tag is a quantization selector (default Q4_K_M), revision is always
`main`, quants in sub-folders are found through a recursive tree listing, shards of the chosen quant
are all taken, mmproj files are separated (F16 preferred). GGUF repos become a v0.1 artifact (weights +
mmproj + one chat template), safetensors repos a v0.2 one. The stored tag lowercases org/repo and
keeps the tag's case; HF API calls keep the original case.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmr.errors import ModelNotFoundError, RegistryError
from dmr.models import artifact, reference
from dmr.models.auth import RegistryAuthError
from dmr.models.package import package
from dmr.models.progress import Progress, ProgressCallback, human_size
from dmr.models.pull_result import PullResult
from dmr.models.store import Store

DEFAULT_QUANT = "Q4_K_M"
REVISION = "main"
MAX_PARALLEL_DOWNLOADS = 4
_LICENSE_RE = re.compile(r"(^|/)(license|licence|copying|notice)", re.IGNORECASE)
_CONFIG_SUFFIXES = (".json", ".md", ".txt", ".vocab")


def parse_reference(ref: str) -> tuple[str, str]:
    """`hf.co/Org/Repo:Q4_K_M` -> ("Org/Repo", "Q4_K_M"); tag defaults to "latest"."""
    raw = ref.strip()
    for prefix in ("hf.co/", f"{reference.HUGGINGFACE}/"):
        if raw.startswith(prefix):
            raw = raw[len(prefix) :]
            break
    repo, _, tag = raw.partition(":")
    return repo, tag or "latest"


def contains_quant(filename: str, quant: str) -> bool:
    """DMR's containsQuantization: the quant as a `[-._]`-delimited token, case-insensitive."""
    pattern = r"[-._]" + re.escape(quant) + r"(?:$|[-._])"
    return re.search(pattern, posixpath.basename(filename), re.IGNORECASE) is not None


_SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


@dataclass
class Selection:
    weights: list[str]
    mmproj: str | None = None
    template: str | None = None
    quant: str = ""
    default_used: bool = False
    extras: list[str] = field(default_factory=list)


def select_gguf(files: Iterable[str], tag: str) -> Selection:
    """DMR's GGUF choice among `files` (repo paths) for quant selector `tag`."""
    names = sorted(files)
    ggufs = [f for f in names if f.lower().endswith(".gguf")]
    mmprojs = [f for f in ggufs if "mmproj" in posixpath.basename(f).lower()]
    models = [f for f in ggufs if f not in mmprojs]
    mmproj = next((m for m in mmprojs if contains_quant(m, "F16")), mmprojs[0] if mmprojs else None)
    templates = [f for f in names if f.endswith(".jinja") or "chat_template" in posixpath.basename(f)]
    template = templates[0] if templates else None
    if not models:
        raise ModelNotFoundError("no GGUF model file in the repository")
    quant = DEFAULT_QUANT if tag.lower() in ("", "latest", "main") else tag
    if len(models) == 1:
        return Selection(models, mmproj, template, quant, tag.lower() in ("", "latest", "main"))
    chosen = [f for f in models if contains_quant(f, quant)]
    default_used = tag.lower() in ("", "latest", "main")
    if not chosen and quant != DEFAULT_QUANT:
        raise ModelNotFoundError(f"no GGUF file for quantization {tag!r} in the repository")
    if not chosen:
        first = models[0]
        m = _SHARD_RE.search(first)
        prefix = first[: m.start()] if m else None
        chosen = [f for f in models if prefix and f.startswith(prefix) and _SHARD_RE.search(f)] or [first]
    return Selection(_shard_order(chosen), mmproj, template, quant, default_used)


def _shard_order(files: list[str]) -> list[str]:
    def key(f: str) -> tuple[int, str]:
        m = _SHARD_RE.search(f)
        return (int(m.group(1)) if m else 0, f)

    return sorted(files, key=key)


def _api(endpoint: str | None, token: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token or False)


def _hub_error(exc: Exception, repo: str) -> Exception:
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError) or getattr(
        getattr(exc, "response", None), "status_code", 0
    ) in (
        401,
        403,
    ):
        return RegistryAuthError(f"Unauthorized: access to {repo} on Hugging Face was refused")
    if isinstance(
        exc, errors.RepositoryNotFoundError | errors.EntryNotFoundError | errors.RevisionNotFoundError
    ):
        return ModelNotFoundError(f"model {repo} not found on Hugging Face")
    return RegistryError(f"Hugging Face request for {repo} failed: {exc}")


def pull(
    ref: str,
    store: Store,
    progress: ProgressCallback | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> PullResult:
    """Pull an HF repo into the store; returns a pull.PullResult."""
    import os

    from huggingface_hub import hf_hub_download

    repo, tag = parse_reference(ref)
    stored_tag = str(reference.parse(f"{reference.HUGGINGFACE}/{repo}:{tag}"))
    prog = Progress(progress, "pull")
    token = token or os.environ.get("HF_TOKEN") or None
    if any(stored_tag in m.tags for m in store.list()):
        model = store.get(stored_tag)
        prog.success(f"Using cached model: {model.config.get('size', '')}")
        return PullResult(model.id, True, [])
    api = _api(endpoint, token)
    prog.message("Fetching file list...")
    try:
        entries = [
            e for e in api.list_repo_tree(repo, recursive=True, revision=REVISION) if hasattr(e, "size")
        ]
        info = api.model_info(repo, revision=REVISION)
    except Exception as exc:
        raise _hub_error(exc, repo) from exc
    sizes = {e.path: int(e.size or 0) for e in entries}
    for path in sizes:
        artifact.safe_relpath(path)
    ggufs = [p for p in sizes if p.lower().endswith(".gguf")]
    if ggufs:
        sel = select_gguf(sizes, tag)
        prog.message(f"Selected {sel.quant} quantization" + (" (default)" if sel.default_used else ""))
        wanted = sel.weights + [f for f in (sel.mmproj, sel.template) if f]
    else:
        if not any(p.endswith(".safetensors") for p in sizes):
            raise ModelNotFoundError(f"{repo} has neither GGUF nor safetensors files")
        wanted = [
            p
            for p in sizes
            if not _LICENSE_RE.search(p)
            and (
                p.endswith(".safetensors")
                or p.endswith(_CONFIG_SUFFIXES)
                or p.endswith("tokenizer.model")
                or p.endswith(".jinja")
            )
        ]
        sel = None
    total = sum(sizes[f] for f in wanted)
    prog.total = total
    prog.message(f"Found {len(wanted)} files ({human_size(total)} total)")
    tmp = Path(tempfile.mkdtemp(prefix="hf-", dir=store.tmp_dir))
    try:

        def fetch(name: str) -> str:
            path = hf_hub_download(
                repo, name, revision=REVISION, local_dir=tmp, endpoint=endpoint, token=token or False
            )
            prog.update(name, sizes[name], sizes[name], force=True)
            return str(path)

        try:
            with ThreadPoolExecutor(MAX_PARALLEL_DOWNLOADS) as pool:
                local = dict(zip(wanted, pool.map(fetch, wanted), strict=True))
        except Exception as exc:
            raise _hub_error(exc, repo) from exc
        prog.message("Building model artifact...")
        created = int(info.last_modified.timestamp()) if getattr(info, "last_modified", None) else 0
        if sel is not None:
            model_id = package(
                store,
                gguf=local[sel.weights[0]],
                mmproj=local[sel.mmproj] if sel.mmproj else None,
                chat_template=local[sel.template] if sel.template else None,
                created=created,
                tags=[stored_tag],
            )
        else:
            shutil.rmtree(tmp / ".cache", ignore_errors=True)
            model_id = package(store, safetensors_dir=tmp, created=created, tags=[stored_tag])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prog.success("Model pulled successfully")
    return PullResult(model_id, False, [])

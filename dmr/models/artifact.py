"""The OCI artifact DMR writes: media types, manifest and config JSON, and their validation.

Bytes matter here: the model ID is the sha256 of the manifest bytes, so JSON is serialised the way Go's
encoding/json does it (compact, struct field order, sorted map keys, `<>&` escaped) and never re-encoded
after it has been hashed.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from datetime import datetime, timezone
from typing import Any

from dmr.errors import RegistryError, UnsafePathError
from dmr.models.reference import looks_like_digest

MANIFEST_OCI = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (MANIFEST_OCI, MANIFEST_DOCKER_V2)

CONFIG_V01 = "application/vnd.docker.ai.model.config.v0.1+json"
CONFIG_V02 = "application/vnd.docker.ai.model.config.v0.2+json"
CONFIG_CNCF = "application/vnd.cncf.model.config.v1+json"
CONFIG_TYPES = (CONFIG_V01, CONFIG_V02, CONFIG_CNCF)
ARTIFACT_CNCF = "application/vnd.cncf.model.manifest.v1+json"

LAYER_GGUF = "application/vnd.docker.ai.gguf.v3"
LAYER_SAFETENSORS = "application/vnd.docker.ai.safetensors"
LAYER_DDUF = "application/vnd.docker.ai.dduf"
LAYER_MMPROJ = "application/vnd.docker.ai.mmproj"
LAYER_CHAT_TEMPLATE = "application/vnd.docker.ai.chat.template.jinja"
LAYER_LICENSE = "application/vnd.docker.ai.license"
LAYER_VLLM_CONFIG_TAR = "application/vnd.docker.ai.vllm.config.tar"
LAYER_DIR_TAR = "application/vnd.docker.ai.dir.tar"
LAYER_FILE = "application/vnd.docker.ai.model.file"
CNCF_WEIGHT_GGUF = "application/vnd.cncf.model.weight.v1.gguf"
CNCF_WEIGHT_SAFETENSORS = "application/vnd.cncf.model.weight.v1.safetensors"
CNCF_WEIGHT_RAW = "application/vnd.cncf.model.weight.v1.raw"

ANNOTATION_FILEPATH = "org.cncf.model.filepath"
ANNOTATION_FILE_METADATA = "org.cncf.model.file.metadata+json"
ANNOTATION_UNTESTED = "org.cncf.model.file.mediatype.untested"


class UnsupportedConfigError(RegistryError):
    """The artifact's config media type is not one DMR reads (DMR answers 422 "try upgrading")."""

    http_status = 422
    error_type = "invalid_request_error"


def go_json(obj: Any) -> bytes:
    """Serialise like Go's json.Marshal: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(ch, esc)
    return text.encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(
    media_type: str, digest: str, size: int, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    d: dict[str, Any] = {"mediaType": media_type, "size": size, "digest": digest}
    if annotations:
        d["annotations"] = annotations
    return d


def file_annotations(relpath: str, size: int) -> dict[str, str]:
    """Layer annotations as DMR's builder writes them; metadata fixed (mode 0644, epoch) for determinism."""
    meta = {
        "name": posixpath.basename(relpath),
        "mode": 420,
        "uid": 0,
        "gid": 0,
        "size": size,
        "mtime": "1970-01-01T00:00:00Z",
        "typeflag": 48,
    }
    return {
        ANNOTATION_FILEPATH: relpath,
        ANNOTATION_FILE_METADATA: go_json(meta).decode(),
        ANNOTATION_UNTESTED: "false",
    }


def build_manifest(config_media_type: str, config_bytes: bytes, layers: list[dict[str, Any]]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_OCI,
        "config": descriptor(config_media_type, sha256_digest(config_bytes), len(config_bytes)),
        "layers": layers,
    }
    return go_json(manifest)


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> int:
    """RFC3339 (with or without fractional seconds) -> unix seconds; 0 if unparsable."""
    if not value:
        return 0
    v = value.replace("Z", "+00:00")
    v = re.sub(r"\.(\d{6})\d+", r".\1", v)  # Go writes nanoseconds, Python reads micro
    try:
        return int(datetime.fromisoformat(v).timestamp())
    except ValueError:
        return 0


#: The longest and deepest relative path a layer may name inside a model bundle.
MAX_PATH_CHARS = 1024
MAX_PATH_DEPTH = 32


def safe_relpath(path: str) -> str:
    """Reject absolute paths, `..`, backslashes and empty names: annotations and tar names come from
    registries and archives we do not trust, and end up as paths under the bundle directory."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise UnsafePathError(f"unsafe file path {path!r}")
    norm = posixpath.normpath(path)
    if norm in (".", "") or norm.startswith("../") or norm == ".." or "/../" in f"/{norm}/":
        raise UnsafePathError(f"unsafe file path {path!r}")
    if any(part == ".." for part in path.split("/")):
        raise UnsafePathError(f"unsafe file path {path!r}")
    # what a file system takes: a longer name or a deeper tree was an OSError (a 500) when the bundle was made
    parts = norm.split("/")
    if len(norm) > MAX_PATH_CHARS or len(parts) > MAX_PATH_DEPTH or any(len(p.encode()) > 255 for p in parts):
        raise UnsafePathError(
            f"file path {path[:80]!r}... is too long or too deep (at most {MAX_PATH_CHARS} characters, "
            f"{MAX_PATH_DEPTH} levels and 255 bytes a name)"
        )
    return norm


def parse_manifest(raw: bytes) -> dict[str, Any]:
    """Parse and validate a model manifest (RegistryError, UnsupportedConfigError, UnsafePathError)."""
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise RegistryError(f"manifest is not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise RegistryError("not an OCI image manifest (schemaVersion 2)")
    cfg = manifest.get("config")
    if not isinstance(cfg, dict) or not looks_like_digest(str(cfg.get("digest", ""))):
        raise RegistryError("manifest has no valid config descriptor")
    if cfg.get("mediaType") not in CONFIG_TYPES:
        raise UnsupportedConfigError(
            f"config type {cfg.get('mediaType')!r} is not supported; try upgrading dmr"
        )
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise RegistryError("manifest has no layers")
    for layer in layers:
        if not isinstance(layer, dict) or not looks_like_digest(str(layer.get("digest", ""))):
            raise RegistryError("manifest layer has no valid sha256 digest")
        if not isinstance(layer.get("size"), int) or layer["size"] < 0:
            raise RegistryError("manifest layer has no valid size")
        path = (layer.get("annotations") or {}).get(ANNOTATION_FILEPATH)
        if path is not None:
            safe_relpath(str(path))
    return manifest


def blob_digests(manifest: dict[str, Any]) -> list[str]:
    """Every blob a manifest needs: layers in order, then the config (DMR's models.json `files` order)."""
    return [layer["digest"] for layer in manifest["layers"]] + [manifest["config"]["digest"]]


def total_size(manifest: dict[str, Any]) -> int:
    return int(sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"])


def normalize_config(media_type: str, raw: bytes) -> tuple[dict[str, Any], int]:
    """Return (Docker-shaped `config` object, created unix time) for any supported config type."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise RegistryError(f"model config is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise RegistryError("model config is not a JSON object")
    desc = doc.get("descriptor") or {}
    cfg = doc.get("config") or {}
    if media_type == CONFIG_CNCF:
        # ModelPack: camelCase, createdAt; mapped to the Docker shape as DMR's API does.
        out: dict[str, Any] = {
            "format": cfg.get("format", ""),
            "quantization": cfg.get("quantization", cfg.get("precision", "")),
            "parameters": cfg.get("paramSize", ""),
            "architecture": cfg.get("architecture", ""),
        }
        return {k: v for k, v in out.items() if v != ""}, parse_time(str(desc.get("createdAt", "")))
    return dict(cfg), parse_time(str(desc.get("created", "")))

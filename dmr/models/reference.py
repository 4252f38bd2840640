"""Model references, normalised the way Docker Model Runner does it.

DMR runs every user-supplied name through `normalizeModelName` and then distribution/reference:
short names gain the `ai/` namespace and `:latest`, `hf.co` becomes `huggingface.co`, the name (never
the tag) is lowercased, and the registry defaults to docker.io (`DMR_DEFAULT_REGISTRY` overrides it).
IDs (12 or 64 hex chars, `sha256:<64>`) are not references at all: the store resolves them.

Output form: the short Docker Hub form (`ai/smollm2:latest`, no `docker.io/`), which is what Docker
Desktop, Testcontainers and Compose compare against; input accepts every form.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from dmr import config
from dmr.errors import InvalidReferenceError

DEFAULT_NAMESPACE = "ai"
DEFAULT_TAG = "latest"
DOCKER_HUB = "docker.io"
HUGGINGFACE = "huggingface.co"
#: docker.io is a name, not a host: the registry API lives here.
DOCKER_HUB_API = "registry-1.docker.io"

_ID_RE = re.compile(r"^(?:[a-f0-9]{12}|[a-f0-9]{64})$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
# distribution/reference grammar: path components and tags.
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_HOST_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.?)+(?::[0-9]+)?$|^\[[0-9a-fA-F:.]+\](?::[0-9]+)?$"
)


def looks_like_id(value: str) -> bool:
    """12- or 64-char lowercase hex: a (short) model ID, as DMR's looksLikeID."""
    return bool(_ID_RE.match(value))


def looks_like_digest(value: str) -> bool:
    """`sha256:<64 lowercase hex>`, as DMR's looksLikeDigest."""
    return bool(_DIGEST_RE.match(value))


def is_huggingface(value: str) -> bool:
    v = value.strip()
    return v.startswith(("hf.co/", f"{HUGGINGFACE}/"))


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised model reference. `tag` is None only for a pure digest reference."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Short form of the repository: `ai/smollm2`, `localhost:5000/x/y`."""
        if self.registry == DOCKER_HUB:
            return self.repository
        return f"{self.registry}/{self.repository}"

    @property
    def full_name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        """The short form used in API output and in the store's index."""
        return self._render(self.name)

    @property
    def full(self) -> str:
        """Fully qualified form (`docker.io/ai/smollm2:latest`), as upstream's current store writes."""
        return self._render(self.full_name)

    def _render(self, name: str) -> str:
        out = name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    @property
    def is_huggingface(self) -> bool:
        return self.registry == HUGGINGFACE

    @property
    def reference(self) -> str:
        """What goes after `/manifests/`: the digest when there is one (it pins the content), else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def host(self) -> str:
        """Host[:port] to send registry API requests to."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def scheme(self) -> str:
        return "http" if is_insecure_host(self.registry) else "https"

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def same_name(self, other: Reference) -> bool:
        return self.registry == other.registry and self.repository == other.repository


def is_insecure_host(registry: str) -> bool:
    """Plain http for loopback and mDNS names, as distribution does; everything with DMR_INSECURE_REGISTRY."""
    if config.insecure_registry():
        return True
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".local"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_domain(name: str) -> tuple[str | None, str]:
    first, sep, rest = name.partition("/")
    # DMR's rule, not distribution/reference's: an upper-case first part (`AI/SmolLM2`) is a name to
    # lowercase, not a registry; only a dot, a port or localhost makes a registry.
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, name


def parse(value: str) -> Reference:
    """Parse any accepted form into a normalised Reference.

    Raises InvalidReferenceError for IDs (resolve those with the store first) and malformed names.
    """
    raw = value.strip()
    if not raw:
        raise InvalidReferenceError("empty model reference")
    if looks_like_digest(raw) or raw.startswith("sha256:"):
        raise InvalidReferenceError(f"{raw!r} is a model ID, not a reference")
    if raw.startswith("hf.co/"):
        raw = HUGGINGFACE + raw[len("hf.co") :]

    digest: str | None = None
    if "@" in raw:
        raw, _, digest = raw.partition("@")
        if not looks_like_digest(digest):
            raise InvalidReferenceError(f"invalid digest {digest!r} in reference {value!r}")

    tag: str | None = None
    slash = raw.rfind("/")
    colon = raw.rfind(":")
    if colon > slash:
        raw, tag = raw[:colon], raw[colon + 1 :]
        # DMR: "model:" means no tag.
        if tag == "":
            tag = None
    if tag is not None and not _TAG_RE.match(tag):
        raise InvalidReferenceError(f"invalid tag {tag!r} in reference {value!r}")
    if tag is None and digest is None:
        tag = DEFAULT_TAG

    domain, path = _split_domain(raw)
    if domain is None:
        domain = config.default_registry()
        if "/" not in path:
            path = f"{DEFAULT_NAMESPACE}/{path}"
    domain = domain.lower()
    if domain == "hf.co":
        domain = HUGGINGFACE
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DOCKER_HUB
    if not _HOST_RE.match(domain):
        raise InvalidReferenceError(f"invalid registry {domain!r} in reference {value!r}")
    path = path.lower()
    parts = path.split("/")
    if not path or not all(_COMPONENT_RE.match(p) for p in parts):
        raise InvalidReferenceError(f"invalid model name {value!r}")
    if len(domain) + 1 + len(path) > 255:
        raise InvalidReferenceError(f"model name too long: {value!r}")
    return Reference(domain, path, tag, digest)


def normalize(value: str) -> str:
    """DMR's normalizeModelName: the canonical short string for a user input.

    IDs and digests come back unchanged (only the store can resolve them), as does the empty string.
    """
    raw = value.strip()
    if not raw or looks_like_id(raw) or raw.startswith("sha256:"):
        return raw
    return str(parse(raw))

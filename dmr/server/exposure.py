"""Which browsers' requests dmr serves: the `Host` a request names and the `Origin` a page sends.

With no API key (the default) the runner trusts whoever can reach its port, and two kinds of web page can
reach it through the user's own browser:
- **Cross-site pages.** A "simple" POST (`Content-Type: text/plain`, no preflight) from any site was executed:
  tag, pull, `_configure`, unload, push. A state-changing request (any method but GET, HEAD and OPTIONS)
  whose `Origin` is neither the server itself nor an allowed origin is refused, whatever its content type.
- **DNS rebinding.** A page whose own name resolves to 127.0.0.1 reads everything (`/engines/requests`
  holds other people's prompts) because to the browser it is same-origin. Every request whose `Host` is not
  a name this server answers to is refused: IP literals (a page cannot rebind those: its origin would be
  the IP itself), `localhost` and `*.localhost`, Docker's names for the host, this machine's hostname, and
  `DMR_ALLOWED_HOSTS`. `*` turns the check off.

Clients that are not browsers (the openai SDK, curl, the CLI, Compose, Testcontainers) send no `Origin` and
name the address they connect to, so they are unaffected.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

#: Origins always allowed (CORS and state-changing requests): the loopback names on any port.
LOCAL_ORIGINS = r"https?://(localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(:\d+)?"
_LOCAL_ORIGIN = re.compile(LOCAL_ORIGINS)
#: Names for this machine that need no configuration: Docker's names for the host (what containers and
#: Compose services use to reach the runner) and the loopback name.
DEFAULT_HOSTS = (
    "localhost",
    "host.docker.internal",
    "model-runner.docker.internal",
    "gateway.docker.internal",
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _host_name(value: str) -> str:
    """`Host` header -> the lower-case name or address without port and brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Exposure:
    """The names and origins one server accepts."""

    hosts: frozenset[str]
    any_host: bool
    origins: frozenset[str]
    any_origin: bool

    @classmethod
    def build(cls, allowed_hosts: Iterable[str] = (), origins: Iterable[str] = ()) -> Exposure:
        extra = {_host_name(h) for h in allowed_hosts if h.strip()}
        machine = socket.gethostname().lower()
        names = {*DEFAULT_HOSTS, machine, f"{machine}.local", *extra}
        given = {o.strip().rstrip("/") for o in origins if o.strip()}
        return cls(frozenset(names - {"*"}), "*" in extra, frozenset(given - {"*"}), "*" in given)

    def host_allowed(self, host: str | None) -> bool:
        if self.any_host or not host:  # HTTP/1.0 clients send no Host; a browser always does
            return True
        name = _host_name(host)
        return _is_ip(name) or name in self.hosts or name.endswith(".localhost")

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        """Same-origin (the page was served by this server under the name it used), a loopback origin, or
        one configured. `null` (sandboxed frames, file://) is never allowed."""
        origin = origin.strip().rstrip("/")
        if self.any_origin or origin in self.origins or _LOCAL_ORIGIN.fullmatch(origin):
            return True
        parts = urlsplit(origin)
        return (
            bool(host) and parts.scheme in ("http", "https") and parts.netloc.lower() == (host or "").lower()
        )

    def refusal(self, method: str, headers: Mapping[str, str]) -> str | None:
        """Why this request is refused, or None to serve it."""
        host = headers.get("host")
        if not self.host_allowed(host):
            return (
                f"Host {host!r} is not a name this server answers to (DNS rebinding protection); "
                "add it to DMR_ALLOWED_HOSTS or dmr serve --allowed-hosts"
            )
        origin = headers.get("origin")
        if origin is not None and method not in SAFE_METHODS and not self.origin_allowed(origin, host):
            return (
                f"cross-site request from origin {origin!r} refused; "
                "add it to DMR_ORIGINS or dmr serve --origins to allow it"
            )
        return None

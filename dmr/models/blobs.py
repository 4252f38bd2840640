"""Blob download into the store: Range resume, sha256 while streaming, atomic rename.

The bytes go to `blobs/sha256/<hex>.incomplete` (DMR's name, so DMR and we resume each other's
downloads) and become `blobs/sha256/<hex>` by one rename after the digest matched; a mismatch deletes
the partial file, so a corrupt blob is never visible under its digest. Resume follows DMR: send the
partial size as a Range offset and append only if the server answered 206 at exactly that offset,
else restart from zero. A per-digest file lock makes concurrent pulls (threads or processes) of one
blob download it once: the second waits, then finds the blob present.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import time
from dataclasses import dataclass

import filelock
import requests
import urllib3.exceptions

from dmr.errors import DigestMismatchError, RegistryError, StoreError
from dmr.models.progress import Progress
from dmr.models.registry import RegistryClient
from dmr.models.store import Store, fsync_dir

READ_CHUNK = 1 << 20
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)?/(\d+|\*)")
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
)


@dataclass
class BlobResult:
    digest: str
    size: int
    #: Bytes received over the network for this blob (0 when it was already stored).
    downloaded: int = 0
    #: Offset the first request resumed from (size of the partial file found).
    resumed_from: int = 0
    cached: bool = False


def fetch_blob(
    client: RegistryClient,
    store: Store,
    digest: str,
    size: int,
    progress: Progress | None = None,
    retries: int = 3,
    backoff: float = 0.5,
) -> BlobResult:
    """Make blob `digest` present in `store`. Raises DigestMismatchError, RegistryError, StoreError."""
    lock = store.lock(f"blob-{digest}")
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise StoreError(errno.ETIMEDOUT, f"timed out waiting for another download of {digest}") from exc
    try:
        if store.has_blob(digest):
            if progress:
                progress.update(digest, size, size, force=True)
            return BlobResult(digest, size, cached=True)
        return _download(client, store, digest, size, progress, retries, backoff)
    finally:
        lock.release()


def _hash_file(path: str, n: int) -> hashlib._Hash:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = n
        while remaining:
            chunk = f.read(min(READ_CHUNK, remaining))
            if not chunk:
                break
            h.update(chunk)
            remaining -= len(chunk)
    return h


def _download(
    client: RegistryClient,
    store: Store,
    digest: str,
    size: int,
    progress: Progress | None,
    retries: int,
    backoff: float,
) -> BlobResult:
    part = str(store.incomplete_path(digest))
    result = BlobResult(digest, size)
    failures = 0
    first = True
    while True:
        offset = os.path.getsize(part) if os.path.exists(part) else 0
        if offset > size:
            os.unlink(part)
            offset = 0
        if first:
            result.resumed_from = offset
            first = False
        try:
            hasher = _stream_once(client, part, digest, size, offset, progress, result)
        except _NETWORK_ERRORS as exc:
            failures += 1
            if failures > retries:
                raise RegistryError(f"download of {digest} failed after {retries} retries: {exc}") from exc
            time.sleep(backoff * 2 ** (failures - 1))
            continue
        except RegistryError as exc:
            # A 5xx that outlived the client's own retries, or a connection that could not be opened.
            failures += 1
            if failures > retries or "unreachable" not in str(exc):
                raise
            time.sleep(backoff * 2 ** (failures - 1))
            continue
        if hasher is not None:
            break
    _verify_and_commit(store, part, digest, size, hasher)
    if progress:
        progress.update(digest, size, size, force=True)
    return result


def _stream_once(
    client: RegistryClient,
    part: str,
    digest: str,
    size: int,
    offset: int,
    progress: Progress | None,
    result: BlobResult,
) -> hashlib._Hash | None:
    """One GET from `offset`. Returns the sha256 state of the whole file once it holds `size` bytes,
    None when the caller should simply try again."""
    if offset == size and size > 0:
        return _hash_file(part, size)
    resp = client.open_blob(digest, offset)
    with resp:
        if resp.status_code == 416:
            # Our partial file is not a prefix the server accepts (DMR's endless-416 bug): restart.
            os.unlink(part)
            return None
        if offset and resp.status_code == 206:
            m = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                offset = 0
        elif offset:
            offset = 0  # the server ignored the Range: start again
        mode = "r+b" if offset else "wb"
        current = offset
        # The partial prefix is hashed once, then every new byte is hashed as it arrives.
        hasher = _hash_file(part, offset) if offset else hashlib.sha256()
        try:
            with open(part, mode) as f:
                if offset:
                    f.seek(offset)
                    f.truncate()
                for chunk in resp.iter_content(READ_CHUNK):
                    f.write(chunk)
                    hasher.update(chunk)
                    current += len(chunk)
                    result.downloaded += len(chunk)
                    if current > size:
                        break
                    if progress:
                        progress.update(digest, size, current)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            if isinstance(exc, _NETWORK_ERRORS):
                raise
            if exc.errno == errno.ENOSPC:
                # Drop the partial file: a full disk is better left with the space given back.
                with contextlib.suppress(OSError):
                    os.unlink(part)
                raise StoreError(errno.ENOSPC, f"no space left on device while downloading {digest}") from exc
            raise StoreError(exc.errno or errno.EIO, f"cannot write {part}: {exc}") from exc
    if current < size:
        # The body ended early without an exception (server closed cleanly): resume.
        raise requests.exceptions.ChunkedEncodingError(f"short read: {current} of {size} bytes")
    return hasher


def _verify_and_commit(store: Store, part: str, digest: str, size: int, hasher: hashlib._Hash) -> None:
    actual_size = os.path.getsize(part)
    actual = "sha256:" + hasher.hexdigest()
    if actual != digest or actual_size != size:
        os.unlink(part)
        raise DigestMismatchError(
            f"blob {digest} failed verification: got {actual} ({actual_size} bytes, expected {size}); "
            "the download was discarded"
        )
    final = store.blob_path(digest)
    os.replace(part, final)
    fsync_dir(final.parent)

"""Export a model as a tar and load one back (DMR's `GET /models/{ref}/export`, `POST /models/load`).

Layout: `manifest.json` (the raw manifest bytes) and `blobs/sha256/<hex>` for the config and every
layer. Loading streams each blob to a temp file while hashing it and accepts only these names: any
other entry (a path with `..`, an absolute path, a link, a device) is rejected before anything is
written, and a blob whose bytes do not match its name is discarded.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import shutil
import tarfile
from typing import IO

from dmr.errors import CorruptModelError, DigestMismatchError, DmrError, StoreError, UnsafePathError
from dmr.models import artifact
from dmr.models.progress import Progress, ProgressCallback
from dmr.models.store import Store

_BLOB_RE = re.compile(r"^blobs/sha256/([a-f0-9]{64})$")
_MAX_MANIFEST = 4 << 20
#: Left free on the store's disk by a load: the rest of the system keeps room to work.
_DISK_RESERVE = 64 << 20


def export(store: Store, ref: str, out: IO[bytes]) -> str:
    """Write the model `ref` names to `out` as a tar stream; returns its ID."""
    model_id, manifest = store.manifest(ref)
    raw = store.read_manifest(model_id)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(raw)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(raw))
        for digest in dict.fromkeys(artifact.blob_digests(manifest)):
            path = store.blob_path(digest)
            info = tarfile.TarInfo(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            info.size = path.stat().st_size
            info.mode = 0o644
            with path.open("rb") as f:
                tar.addfile(info, f)
    return model_id


def load(
    store: Store, src: IO[bytes], progress: ProgressCallback | None = None, tags: list[str] | None = None
) -> str:
    """Import a tar written by `export` (or DMR); returns the model ID. Untagged unless `tags`."""
    prog = Progress(progress, "pull")
    written: list[str] = []  # blobs this load stored: removed again unless the loaded model uses them
    model_id: str | None = None
    try:
        raw = _read_archive(store, src, prog, written)
        if raw is None:
            raise UnsafePathError("archive has no manifest.json")
        model_id = store.add(raw, tags or [])
    except (tarfile.TarError, EOFError) as exc:
        # not a tar, or one cut short: a client's mistake (400)
        raise CorruptModelError(f"not a readable model archive: {exc}") from None
    finally:
        _remove_unused(store, written)
    prog.success(f"Loaded model {model_id}")
    return model_id


def _remove_unused(store: Store, digests: list[str]) -> None:
    """A failed load, or blobs its manifest does not name, must not leave files nothing refers to (a 10 KB
    upload left a 1 GiB blob behind for good)."""
    if not digests:
        return
    used = {d for m in store.list() for d in m.files}
    for digest in digests:
        if digest not in used:
            with contextlib.suppress(FileNotFoundError):
                store.blob_path(digest).unlink()


def _read_archive(store: Store, src: IO[bytes], prog: Progress, written: list[str]) -> bytes | None:
    """Stores each verified blob (adding the digests it wrote to `written`); returns the manifest's bytes
    (None when the archive has none)."""
    raw: bytes | None = None
    with tarfile.open(fileobj=src, mode="r|") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if member.isdir() and name.rstrip("/") in ("", "blobs", "blobs/sha256"):
                continue
            if not member.isfile():
                raise UnsafePathError(f"unexpected tar entry {member.name!r} (type {member.type!r})")
            if member.issparse():
                # a sparse entry claims far more bytes than it sends: what lands on disk is what it claims
                raise UnsafePathError(f"sparse tar entry {member.name!r}: model archives hold whole files")
            if name == "manifest.json":
                if member.size > _MAX_MANIFEST:
                    raise UnsafePathError("manifest.json is too large")
                f = tar.extractfile(member)
                assert f is not None
                raw = f.read()
                continue
            m = _BLOB_RE.match(name)
            if not m:
                artifact.safe_relpath(name)  # a clearer error for traversal attempts
                raise UnsafePathError(f"unexpected tar entry {member.name!r}")
            digest = f"sha256:{m.group(1)}"
            f = tar.extractfile(member)
            assert f is not None
            if _store_blob(store, f, digest, member.size, prog):
                written.append(digest)
    return raw


def _store_blob(store: Store, f: IO[bytes], digest: str, size: int, prog: Progress) -> bool:
    """True when it wrote the blob (False: the store had it already)."""
    if store.has_blob(digest):
        while f.read(1 << 20):
            pass
        prog.update(digest, size, size, force=True)
        return False
    spare = shutil.disk_usage(store.tmp_dir).free - _DISK_RESERVE
    if size > spare:
        raise StoreError(
            errno.ENOSPC,
            f"cannot store {digest}: it has {size} bytes and the disk has {max(spare, 0)} to spare",
        )
    tmp = store.tmp_dir / f"load.{os.getpid()}.{digest[7:19]}"
    h = hashlib.sha256()
    done = 0
    try:
        with tmp.open("wb") as out:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
                done += len(chunk)
                prog.update(digest, size, done)
            out.flush()
            os.fsync(out.fileno())
        if "sha256:" + h.hexdigest() != digest:
            raise DigestMismatchError(f"archive blob {digest} does not match its content; discarded")
        os.replace(tmp, store.blob_path(digest))
    except DmrError:
        raise
    except OSError as exc:  # DmrErrors are OSErrors too (ConnectionError): re-raised untouched above
        raise StoreError(exc.errno or 5, f"cannot store {digest}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return True

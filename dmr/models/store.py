"""The content-addressed model store, in DMR's on-disk layout (so existing stores are reusable).

    layout.json  models.json  blobs/sha256/<hex>  manifests/sha256/<hex>  bundles/sha256/<hex>/

Consistency rules, which hold after a crash at any instant:
- every file appears under its final name only complete (write to a temp name, fsync, rename);
- blobs are written before the manifest, the manifest before the index entry, and deletion goes the
  other way (index entry first), so the index never names a missing file; a crash can only leave
  unreferenced files, which `gc()` removes;
- `models.json` is rewritten whole under a file lock (DMR has no lock: two processes could lose an
  update); `add` re-checks under that lock that every blob still exists, so a concurrent delete cannot
  leave an entry pointing at a removed blob.
Thread- and process-safe. Locks live in `.locks/`, which DMR ignores.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock

from dmr import config
from dmr.errors import ModelConflictError, ModelNotFoundError, StoreError
from dmr.models import artifact, reference
from dmr.models.reference import Reference

LAYOUT_VERSION = "1.0.0"
#: `.incomplete` downloads older than this are dropped (DMR does the same at startup).
STALE_INCOMPLETE_S = 7 * 24 * 3600


@dataclass
class Model:
    """One manifest in the store, in the shape of DMR's `GET /models` objects."""

    id: str
    tags: list[str]
    files: list[str]
    created: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "tags": list(self.tags), "created": self.created, "config": self.config}


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise StoreError(f"invalid digest {digest!r}")
    return hexpart


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a prefix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _store_error(exc, f"cannot write {path}") from exc
        raise
    fsync_dir(path.parent)


def _store_error(exc: OSError, what: str) -> StoreError:
    if exc.errno == errno.ENOSPC:
        return StoreError(errno.ENOSPC, f"{what}: no space left on device")
    return StoreError(exc.errno or errno.EIO, f"{what}: {exc.strerror or exc}")


class Store:
    """A model store rooted at `root` (default `dmr.config.models_path()`)."""

    def __init__(self, root: str | Path | None = None, lock_timeout: float = 60.0) -> None:
        self.root = Path(root) if root is not None else config.models_path()
        self.lock_timeout = lock_timeout
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.manifests_dir = self.root / "manifests" / "sha256"
        self.bundles_dir = self.root / "bundles" / "sha256"
        self.locks_dir = self.root / ".locks"
        self.tmp_dir = self.root / ".tmp"
        self._ensure_layout()

    def _ensure_layout(self) -> None:
        try:
            for d in (self.blobs_dir, self.manifests_dir, self.bundles_dir, self.locks_dir, self.tmp_dir):
                d.mkdir(parents=True, exist_ok=True)
            layout = self.root / "layout.json"
            if not layout.exists():
                atomic_write(layout, json.dumps({"version": LAYOUT_VERSION}).encode())
            if not (self.root / "models.json").exists():
                with self._locked():
                    if not (self.root / "models.json").exists():
                        self._write_index([])
        except OSError as exc:
            raise _store_error(exc, f"cannot create model store at {self.root}") from exc

    # --- locks ------------------------------------------------------------------------------------

    def lock(self, name: str) -> filelock.BaseFileLock:
        """A cross-process lock named `name` (e.g. a blob digest or a manifest digest)."""
        safe = name.replace(":", "_").replace("/", "_")
        return filelock.FileLock(str(self.locks_dir / f"{safe}.lock"), timeout=self.lock_timeout)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.lock("index")
        try:
            lock.acquire()
        except filelock.Timeout as exc:
            raise StoreError(errno.ETIMEDOUT, f"model store index is locked ({lock.lock_file})") from exc
        try:
            yield
        finally:
            lock.release()

    # --- blobs --------------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs_dir / _hex(digest)

    def incomplete_path(self, digest: str) -> Path:
        return self.blobs_dir / f"{_hex(digest)}.incomplete"

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def put_blob_bytes(self, data: bytes) -> str:
        digest = artifact.sha256_digest(data)
        if not self.has_blob(digest):
            atomic_write(self.blob_path(digest), data)
        return digest

    def put_blob_file(self, src: Path, digest: str) -> None:
        """Add an already verified file as blob `digest`: hard link when possible (instant, no
        extra space), else copy; always through a temp name."""
        dst = self.blob_path(digest)
        if dst.exists():
            return
        tmp = self.tmp_dir / f"{_hex(digest)}.{os.getpid()}.{time.monotonic_ns()}"
        try:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, dst)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _store_error(exc, f"cannot store blob {digest}") from exc

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(errno.ENOENT, f"blob {digest} is missing from the store") from exc

    # --- manifests --------------------------------------------------------------------------------

    def manifest_path(self, model_id: str) -> Path:
        return self.manifests_dir / _hex(model_id)

    def read_manifest(self, model_id: str) -> bytes:
        try:
            return self.manifest_path(model_id).read_bytes()
        except FileNotFoundError as exc:
            raise ModelNotFoundError(f"manifest {model_id} not found in the store") from exc

    # --- index --------------------------------------------------------------------------------------

    def index_version(self) -> tuple[int, int, int] | None:
        """Changes whenever the model index changes: every write replaces models.json by an atomic rename
        (a new inode), and manifests and blobs are content-addressed, so nothing else a listing shows can
        change under the same version. One stat: cheap enough to check on every request."""
        try:
            st = os.stat(self.root / "models.json")
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read_index(self) -> list[dict[str, Any]]:
        path = self.root / "models.json"
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise StoreError(errno.EIO, f"{path} is corrupt: {exc}") from exc
        models = doc.get("models") if isinstance(doc, dict) else None
        if not isinstance(models, list):
            raise StoreError(errno.EIO, f"{path} has no models list")
        return [m for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def _write_index(self, models: list[dict[str, Any]]) -> None:
        atomic_write(self.root / "models.json", json.dumps({"models": models}, indent=2).encode())

    # --- model operations ---------------------------------------------------------------------------

    def add(self, manifest_raw: bytes, tags: list[str] | None = None) -> str:
        """Record a manifest whose blobs are all stored, and point `tags` at it. Returns the model ID."""
        manifest = artifact.parse_manifest(manifest_raw)
        model_id = artifact.sha256_digest(manifest_raw)
        files = artifact.blob_digests(manifest)
        wanted = [str(reference.parse(t)) for t in (tags or [])]
        with self._locked():
            missing = [d for d in files if not self.has_blob(d)]
            if missing:
                raise StoreError(errno.ENOENT, f"cannot add {model_id}: blobs missing: {', '.join(missing)}")
            if not self.manifest_path(model_id).exists():
                atomic_write(self.manifest_path(model_id), manifest_raw)
            models = self._read_index()
            entry = next((m for m in models if m["id"] == model_id), None)
            if entry is None:
                entry = {"id": model_id, "tags": [], "files": files}
                models.append(entry)
            for tag in wanted:
                self._move_tag(models, entry, tag)
            self._write_index(models)
        return model_id

    @staticmethod
    def _move_tag(models: list[dict[str, Any]], entry: dict[str, Any], tag: str) -> None:
        """A tag names one model: drop it (in any spelling) from every other entry, then add it."""
        ref = reference.parse(tag)
        for m in models:
            m["tags"] = [t for t in m.get("tags") or [] if not _same_tag(t, ref)]
        entry["tags"].append(tag)

    def has_model(self, model_id: str) -> bool:
        return any(m["id"] == model_id for m in self._read_index())

    def resolve(self, ref: str) -> dict[str, Any]:
        """The index entry `ref` names: full/short ID, `sha256:` digest, `name@digest` or any tag form."""
        return _resolve(self._read_index(), ref)

    def get(self, ref: str) -> Model:
        return self._model(self.resolve(ref))

    def list(self) -> builtins.list[Model]:
        return [self._model(m) for m in self._read_index()]

    def _model(self, entry: dict[str, Any]) -> Model:
        model = Model(
            id=entry["id"],
            tags=[_display(t) for t in entry.get("tags") or []],
            files=list(entry.get("files") or []),
        )
        with contextlib.suppress(ModelNotFoundError, StoreError, ValueError, KeyError):
            manifest = json.loads(self.read_manifest(model.id))
            cfg = manifest["config"]
            model.config, model.created = artifact.normalize_config(
                cfg["mediaType"], self.read_blob(cfg["digest"])
            )
        return model

    def manifest(self, ref: str) -> tuple[str, dict[str, Any]]:
        entry = self.resolve(ref)
        return entry["id"], json.loads(self.read_manifest(entry["id"]))

    def tag(self, ref: str, target: str) -> str:
        """Point tag `target` at the model `ref` names; returns the normalised tag."""
        tag = str(reference.parse(target))
        with self._locked():
            models = self._read_index()
            entry = _resolve(models, ref)
            self._move_tag(models, entry, tag)
            self._write_index(models)
        return tag

    def untag(self, tag: str) -> None:
        ref = reference.parse(tag)
        with self._locked():
            models = self._read_index()
            for m in models:
                m["tags"] = [t for t in m.get("tags") or [] if not _same_tag(t, ref)]
            self._write_index(models)

    def delete(self, ref: str, force: bool = False) -> builtins.list[dict[str, str]]:
        """DMR's delete: by a tag that is not the last -> untag; by the last tag or by ID -> remove the
        model and every blob no other model uses; by ID with several tags -> 409 unless `force`."""
        result: builtins.list[dict[str, str]] = []
        with self._locked():
            models = self._read_index()
            entry = _resolve(models, ref)
            by_id = _is_id_ref(ref, entry)
            tags = list(entry.get("tags") or [])
            if by_id:
                if len(tags) > 1 and not force:
                    raise ModelConflictError(
                        f"unable to delete {ref!r} (must be forced) due to multiple tag references: "
                        + ", ".join(_display(t) for t in tags)
                    )
                untag = tags
            else:
                parsed = reference.parse(ref)
                untag = [t for t in tags if _same_tag(t, parsed)]
            entry["tags"] = [t for t in tags if t not in untag]
            result.extend({"Untagged": _display(t)} for t in untag)
            if entry["tags"]:
                self._write_index(models)
                return result
            models.remove(entry)
            # Index first: from here a crash leaves only unreferenced files, never a dangling entry.
            self._write_index(models)
            self._remove_files(entry, models)
            result.append({"Deleted": entry["id"]})
        return result

    def _remove_files(self, entry: dict[str, Any], remaining: builtins.list[dict[str, Any]]) -> None:
        used = {f for m in remaining for f in m.get("files") or []}
        shutil.rmtree(self.bundles_dir / _hex(entry["id"]), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.manifest_path(entry["id"]).unlink()
        for digest in entry.get("files") or []:
            if digest not in used:
                with contextlib.suppress(FileNotFoundError, StoreError):
                    self.blob_path(digest).unlink()

    def _unreferenced(self, models: builtins.list[dict[str, Any]]) -> Iterator[Path]:
        """Files no index entry references (left by a crash or a failed operation) and stale partial
        downloads. A blob an in-flight pull holds the digest lock of is not one of them."""
        ids = {_hex(m["id"]) for m in models}
        used = {_hex(f) for m in models for f in m.get("files") or []}
        now = time.time()
        for p in self.manifests_dir.iterdir():
            if p.name not in ids:
                yield p
        for p in self.blobs_dir.iterdir():
            if p.name.endswith(".incomplete"):
                with contextlib.suppress(FileNotFoundError):
                    if now - p.stat().st_mtime > STALE_INCOMPLETE_S:
                        yield p
            elif p.name not in used and not p.name.startswith("."):
                lock = self.lock(f"blob-sha256:{p.name}")
                try:
                    lock.acquire(timeout=0)
                except filelock.Timeout:
                    continue
                try:
                    yield p
                finally:
                    lock.release()
        for p in self.bundles_dir.iterdir():
            if p.name not in ids:
                yield p

    def gc(self) -> builtins.list[str]:
        """Remove what `_unreferenced` finds; returns the paths removed."""
        removed: builtins.list[str] = []
        with self._locked():
            for p in self._unreferenced(self._read_index()):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(str(p))
        return removed

    def unreferenced_bytes(self) -> int:
        """What `gc` would free (`dmr df` shows it)."""
        total = 0
        for p in self._unreferenced(self._read_index()):
            for f in p.rglob("*") if p.is_dir() else [p]:
                with contextlib.suppress(OSError):
                    total += f.lstat().st_size if f.is_file() or f.is_symlink() else 0
        return total

    def check(self) -> builtins.list[str]:
        """Consistency problems (empty when healthy): every entry's manifest and blobs exist, no
        temp file is visible under a blob name, and every blob hashes... (size only, for speed)."""
        problems: builtins.list[str] = []
        for m in self._read_index():
            if not self.manifest_path(m["id"]).is_file():
                problems.append(f"{m['id']}: manifest missing")
                continue
            manifest = json.loads(self.read_manifest(m["id"]))
            sizes = {layer["digest"]: layer["size"] for layer in manifest["layers"]}
            sizes[manifest["config"]["digest"]] = manifest["config"]["size"]
            for digest in m.get("files") or []:
                p = self.blob_path(digest)
                if not p.is_file():
                    problems.append(f"{m['id']}: blob {digest} missing")
                elif p.stat().st_size != sizes.get(digest, p.stat().st_size):
                    problems.append(f"{m['id']}: blob {digest} has the wrong size")
        return problems

    def purge(self) -> None:
        """Empty the store (DMR refuses when there is no layout.json: never wipe a foreign directory)."""
        if not (self.root / "layout.json").exists():
            raise StoreError(errno.EINVAL, f"{self.root} is not a model store (no layout.json)")
        with self._locked():
            self._write_index([])
            for d in (self.blobs_dir, self.manifests_dir, self.bundles_dir, self.tmp_dir):
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir(parents=True, exist_ok=True)

    def disk_usage(self) -> int:
        total = 0
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, f)).st_size
        return total


def _display(tag: str) -> str:
    """Stored tags may be fully qualified (upstream's newer stores); output is the short form."""
    try:
        return str(reference.parse(tag))
    except ValueError:
        return tag


def _same_tag(stored: str, ref: Reference) -> bool:
    try:
        return reference.parse(stored) == ref
    except ValueError:
        return False


def _is_id_ref(ref: str, entry: dict[str, Any]) -> bool:
    r = ref.strip()
    if reference.looks_like_digest(r):
        return True
    return reference.looks_like_id(r) and entry["id"].removeprefix("sha256:").startswith(r)


def _resolve(models: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    r = ref.strip()
    if not r:
        raise ModelNotFoundError("empty model reference")
    if reference.looks_like_digest(r):
        for m in models:
            if m["id"] == r:
                return m
        raise ModelNotFoundError(f"model {r} not found")
    if reference.looks_like_id(r):
        matches = [m for m in models if m["id"].removeprefix("sha256:").startswith(r)]
        if len(matches) == 1:
            return matches[0]
        # Not an ID after all (or ambiguous): DMR then treats it as a name.
    try:
        parsed = reference.parse(r)
    except ValueError as exc:
        raise ModelNotFoundError(f"model {r!r} not found: {exc}") from exc
    if parsed.digest is not None:
        for m in models:
            if m["id"] == parsed.digest:
                return m
        raise ModelNotFoundError(f"model {r} not found")
    for m in models:
        if any(_same_tag(t, parsed) for t in m.get("tags") or []):
            return m
    normalized = reference.normalize(r)
    raise ModelNotFoundError(
        f"model {r} not found" + (f" (looked for {normalized})" if normalized != r else "")
    )

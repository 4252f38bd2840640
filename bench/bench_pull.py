"""Pull throughput from a loopback `docker-registry` vs a plain streaming HTTP client, same run.

    python bench/bench_pull.py [--size-mb 500] [--repeat 3]

Starts a registry on 127.0.0.1 (Debian `docker-registry`), packages a ~500 MB model (random bytes in a
GGUF layer) into a scratch store, pushes it, then times, each in a fresh child process:
  plain  - requests.get(stream=True) of every blob, read in 1 MiB chunks and written to a file
           (no hashing, no fsync, no store), i.e. what any downloader pays;
  dmr    - dmr.models.pull.pull() into an empty store (parallel layers, sha256 while streaming,
           fsync, atomic rename, index update).
Prints a markdown table: median seconds, MB/s, ratio dmr/plain, and each child's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(mode: str, ref: str, target: str) -> None:
    # Imports happen before the clock starts: this measures transfer, not interpreter start-up.
    import requests

    from dmr.models.pull import pull
    from dmr.models.store import Store

    t0 = time.perf_counter()
    if mode == "plain":
        registry, _, rest = ref.partition("/")
        repo, _, tag = rest.rpartition(":")
        s = requests.Session()
        m = s.get(
            f"http://{registry}/v2/{repo}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ).json()
        total = 0
        for d in [*m["layers"], m["config"]]:
            with (
                s.get(f"http://{registry}/v2/{repo}/blobs/{d['digest']}", stream=True) as r,
                open(os.path.join(target, d["digest"][7:]), "wb") as f,
            ):
                r.raise_for_status()
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
                    total += len(chunk)
    else:
        result = pull(ref, Store(target))
        total = result.downloaded
    elapsed = time.perf_counter() - t0
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "bytes": total, "rss_mb": rss_kib / 1024}))


def run_child(mode: str, ref: str, work: Path) -> dict[str, float]:
    target = Path(tempfile.mkdtemp(dir=work, prefix=f"{mode}-"))
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, ref, str(target)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    subprocess.run(["rm", "-rf", str(target)], check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", nargs=3, metavar=("MODE", "REF", "TARGET"))
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    from dmr.models import artifact
    from dmr.models.package import write_model
    from dmr.models.push import push
    from dmr.models.store import Store
    from tests.models.registry_server import running_registry

    with tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp:
        work = Path(tmp)
        with running_registry(work / "registry") as reg:
            src = Store(work / "src")
            blob = work / "weights.bin"
            with blob.open("wb") as f:
                for _ in range(args.size_mb):
                    f.write(os.urandom(1 << 20))
            from dmr.models.package import ingest

            digest, size = ingest(src, blob)
            blob.unlink()
            layer = artifact.descriptor(
                artifact.LAYER_GGUF, digest, size, artifact.file_annotations("model.gguf", size)
            )
            ref = f"{reg.host}/bench/model:latest"
            write_model(src, artifact.CONFIG_V01, {"format": "gguf"}, [layer], 0, [ref])
            push(ref, src)
            subprocess.run(["rm", "-rf", str(work / "src")], check=True)

            runs: dict[str, list[dict[str, float]]] = {"plain": [], "dmr": []}
            for _ in range(args.repeat):
                for mode in ("plain", "dmr"):  # interleaved: machine load hits both alike
                    runs[mode].append(run_child(mode, ref, work))

    rows = {}
    for mode, rs in runs.items():
        secs = statistics.median(r["seconds"] for r in rs)
        rows[mode] = (secs, rs[0]["bytes"] / secs / 1e6, max(r["rss_mb"] for r in rs))
    ratio = rows["plain"][0] / rows["dmr"][0]
    print(
        f"\nPull of a {args.size_mb} MB model from a loopback docker-registry "
        f"(median of {args.repeat}, {os.cpu_count()} CPUs)\n"
    )
    print("| client | seconds | MB/s | peak RSS (MB) | throughput vs plain |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| plain requests stream -> file | {rows['plain'][0]:.2f} | {rows['plain'][1]:.0f} | "
        f"{rows['plain'][2]:.0f} | 1.00 |"
    )
    print(
        f"| dmr pull (verify+fsync+store) | {rows['dmr'][0]:.2f} | {rows['dmr'][1]:.0f} | "
        f"{rows['dmr'][2]:.0f} | {ratio:.2f} |"
    )
    ok = ratio >= 0.8 and rows["dmr"][2] < 150
    print(f"\ntarget: ratio >= 0.8 and peak RSS < 150 MB -> {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()

"""Side-by-side serving benchmark: `dmr serve` vs llama-server (same llama.cpp source) [vs llama-cpp-python's
server], same model, same threads, one run, driven by the load harness bench/load.py (../shared/bench/load.py,
kept in the repo).

    python bench/bench_serve.py [--scenarios single,concurrent,multiuser] [--runs 3] [--threads 2]
                                [--peers dmr,dmr-kvu,llama-server,llama-cpp-python]

Scenarios (server configurations as in ../shared/bench/README.md):
  single      one stream (256 tokens) and an 8-turn chat; llama-server -c 8192 -np 1, dmr 1 slot of 8192
  concurrent  8 fresh streams of 128 tokens; llama-server default slots (-np 4 -c 8192) and -np 8 -c 16384,
              dmr 8 slots of 2048 cells
  multiuser   8 users x 8 turns; llama-server -np 8 -c 16384, dmr 8 slots of 2048 cells
Peer dmr-kvu is dmr with one KV pool for all slots (DMR_KV_UNIFIED=1, llama-server's default -kvu).
Each server is started, measured and stopped in turn; load.py reads the server's peak RSS (VmHWM).
Prints a markdown table of medians with dmr/peer ratios, and writes the raw JSON next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOAD = HERE / "load.py"  # ../shared/bench/load.py, kept here (bench/check_load.py compares the two)
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

from tools import build_tools  # noqa: E402  (bench/ is not a package)


@dataclass
class Server:
    label: str
    argv: list[str]
    env: dict[str, str]
    prefix: str
    health: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(url)


#: dmr configurations measured beside plain `dmr` when named in --peers; --dmr-variant adds more.
DMR_VARIANTS: dict[str, dict[str, str]] = {"dmr": {}, "dmr-kvu": {"DMR_KV_UNIFIED": "1"}}


def dmr_server(
    port: int,
    store: Path,
    threads: int,
    slots: int,
    ctx_per_slot: int,
    name: str = "dmr",
    extra_env: dict[str, str] | None = None,
) -> Server:
    env = dict(
        os.environ,
        DMR_KV_UNIFIED="0",
        DMR_MODELS_PATH=str(store),
        DMR_CONTEXT_SIZE=str(ctx_per_slot),
        DMR_PARALLEL=str(slots),
        DMR_KEEP_ALIVE="-1",
        DMR_STATE_PATH=str(store / "state.json"),
        **(extra_env or {}),
    )
    argv = [
        sys.executable,
        "-m",
        "dmr.cli.main",
        "serve",
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--parallel",
        str(slots),
        "--log-level",
        "warning",
    ]
    return Server(f"{name} ({slots}x{ctx_per_slot})", argv, env, "/engines/v1", f"http://127.0.0.1:{port}/")


def llama_server(exe: Path, port: int, model: Path, threads: int, slots: int, ctx: int) -> Server:
    argv = [
        str(exe),
        "-m",
        str(model),
        "-t",
        str(threads),
        "-tb",
        str(threads),
        "-c",
        str(ctx),
        "-np",
        str(slots),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--no-webui",
    ]
    return Server(
        f"llama-server (-np {slots} -c {ctx})",
        argv,
        dict(os.environ),
        "/v1",
        f"http://127.0.0.1:{port}/health",
    )


def llcp_server(python: Path, port: int, model: Path, threads: int, ctx: int) -> Server:
    argv = [
        str(python),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--n_threads",
        str(threads),
        "--n_ctx",
        str(ctx),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--interrupt_requests",
        "False",
    ]
    return Server("llama-cpp-python", argv, dict(os.environ), "/v1", f"http://127.0.0.1:{port}/v1/models")


def start(server: Server, log: Path) -> subprocess.Popen[bytes]:
    """Starts a server (its output to `log`) and waits until it answers. The cwd is outside the checkout:
    `python -m dmr...` must import the installed package, not the source tree."""
    handle = open(log, "wb")  # noqa: SIM115  (the child keeps its copy; ours closes with the process)
    proc = subprocess.Popen(
        server.argv, env=server.env, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent
    )
    handle.close()
    try:
        wait_ready(server.health, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def measure(server: Server, port: int, load_args: list[str], out: Path) -> dict[str, Any]:
    proc = start(server, out.with_suffix(".log"))
    try:
        cmd = [
            sys.executable,
            str(LOAD),
            "--base-url",
            f"http://127.0.0.1:{port}",
            "--prefix",
            server.prefix,
            "--model",
            "ai/smollm2",
            "--server-pid",
            str(proc.pid),
            "--out",
            str(out),
            *load_args,
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result: dict[str, Any] = json.loads(out.read_text())
        return result
    finally:
        stop(proc)


def med(x: Any) -> float | None:
    if isinstance(x, dict):
        v = x.get("median")
        return None if v is None else float(v)
    return None if x is None else float(x)


def peak_rss_mb(result: dict[str, Any]) -> float | None:
    mem = result.get("server_mem")
    if isinstance(mem, dict) and "VmHWM_kB" in mem:
        return float(mem["VmHWM_kB"]) / 1024
    return None


def figures(scenario: str, r: dict[str, Any]) -> dict[str, float | None]:
    wl = r.get("results", {})
    f: dict[str, float | None] = {}
    if scenario == "single":
        s = wl.get("single", {})
        f["decode t/s (1 stream, 256 tok)"] = med(s.get("decode_tps_client"))
        f["TTFT s (1 stream)"] = med(s.get("ttft_s"))
        mt = wl.get("multiturn", {})
        mode = mt.get("modes", {}).get("default", {})
        f["8-turn chat: sum of TTFT s"] = med(mode.get("sum_ttft_s"))
    elif scenario == "concurrent":
        lv = wl.get("concurrent", {}).get("levels", {}).get("8", {})
        f["8 streams: aggregate t/s"] = med(lv.get("aggregate_tps"))
        f["8 streams: p95 TTFT s"] = med(lv.get("ttft_p95_s"))
    elif scenario == "multiuser":
        mu = wl.get("multiuser", {})
        f["8x8 multiuser: warm TTFT p50 s"] = med(mu.get("warm_ttft_p50_s"))
        f["8x8 multiuser: warm TTFT p95 s"] = med(mu.get("warm_ttft_p95_s"))
        f["8x8 multiuser: wall s"] = med(mu.get("wall_s"))
    f[f"peak RSS MB ({scenario})"] = peak_rss_mb(r)
    return f


def main() -> None:
    from conftest import smollm2_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenarios", default="single,concurrent,multiuser")
    ap.add_argument("--peers", default="dmr,llama-server")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--llcp-python", type=Path, default=ROOT / "build" / "peers" / "llcp" / "bin" / "python")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "build" / "bench-serve")
    ap.add_argument(
        "--dmr-variant",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE[,VAR=VALUE]",
        help="another dmr configuration, measured as peer dmr-NAME (e.g. pg128:DMR_PREFILL_GROUP=128)",
    )
    args = ap.parse_args()
    peers = args.peers.split(",")
    variants = dict(DMR_VARIANTS)
    for spec in args.dmr_variant:
        name, _, assignments = spec.partition(":")
        variants[f"dmr-{name}"] = dict(a.split("=", 1) for a in assignments.split(",") if a)
        peers.append(f"dmr-{name}")
    model = smollm2_file()
    exe = build_tools(("llama-server",))["llama-server"] if "llama-server" in peers else None
    args.out_dir.mkdir(parents=True, exist_ok=True)

    store = Path(tempfile.mkdtemp(prefix="dmr-bench-store-"))
    if any(p.startswith("dmr") for p in peers):
        from dmr.models.package import package
        from dmr.models.store import Store

        package(Store(store), gguf=model, tags=["ai/smollm2"])

    common = ["--runs", str(args.runs), "--warmup", "1"]
    plans: dict[str, tuple[list[str], list[tuple[str, Any]]]] = {
        "single": (
            [
                "--workloads",
                "single,multiturn",
                "--ignore-eos",
                "--max-tokens",
                "256",
                "--cache-modes",
                "default",
            ],
            [("dmr", (1, 8192)), ("llama-server", (1, 8192)), ("llama-cpp-python", (1, 8192))],
        ),
        "concurrent": (
            ["--workloads", "concurrent", "--concurrency", "8", "--conc-max-tokens", "128", "--ignore-eos"],
            [
                ("dmr", (8, 2048)),
                ("dmr-kvu", (8, 2048)),
                ("llama-server", (4, 8192)),
                ("llama-server", (8, 16384)),
            ],
        ),
        "multiuser": (
            ["--workloads", "multiuser", "--users", "8", "--turns", "8"],
            [("dmr", (8, 2048)), ("dmr-kvu", (8, 2048)), ("llama-server", (8, 16384))],
        ),
    }
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    for scenario in args.scenarios.split(","):
        load_args, configs = plans[scenario]
        dmr_shape = next(shape for peer, shape in configs if peer == "dmr")
        extra = [(name, dmr_shape) for name in variants if name not in ("dmr", "dmr-kvu")]
        for peer, (slots, ctx) in [*configs[:1], *extra, *configs[1:]]:
            if peer not in peers:
                continue
            port = free_port()
            if peer in variants:
                server = dmr_server(port, store, args.threads, slots, ctx, peer, variants[peer])
            elif peer == "llama-server":
                assert exe is not None
                server = llama_server(exe, port, model, args.threads, slots, ctx)
            else:
                if not args.llcp_python.exists():
                    print(f"skipping llama-cpp-python: {args.llcp_python} not found", file=sys.stderr)
                    continue
                server = llcp_server(args.llcp_python, port, model, args.threads, ctx)
            out = args.out_dir / f"{scenario}-{peer}-{slots}-{ctx}.json"
            print(f"[{scenario}] {server.label} ...", file=sys.stderr, flush=True)
            result = measure(server, port, [*common, *load_args], out)
            table.setdefault(scenario, {})[server.label] = figures(scenario, result)
    shutil.rmtree(store, ignore_errors=True)

    print(
        f"threads: {args.threads}, runs: {args.runs}, model: {model.name}; medians; ratio = dmr / peer "
        "(for times and RSS lower is better, for t/s higher)\n"
    )
    for scenario, by_server in table.items():
        labels = list(by_server)
        ours = [label for label in labels if label.startswith("dmr")]
        others = [label for label in labels if label not in ours]
        pairs = [(a, b) for a in ours for b in others]
        print(f"### {scenario}\n")
        heads = [f"{a.split(' (')[0]} / {b}" for a, b in pairs]
        print("| figure | " + " | ".join(labels) + " | " + " | ".join(heads) + " |")
        print("|---" * (1 + len(labels) + len(pairs)) + "|")
        keys = list(next(iter(by_server.values())))
        for key in keys:
            cells = ["-" if (v := by_server[label].get(key)) is None else f"{v:.3g}" for label in labels]
            ratios = []
            for a_label, b_label in pairs:
                a = by_server[a_label].get(key)
                b = by_server[b_label].get(key)
                ratios.append("-" if a is None or not b else f"{a / b:.2f}")
            print(f"| {key} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
        print()


if __name__ == "__main__":
    main()

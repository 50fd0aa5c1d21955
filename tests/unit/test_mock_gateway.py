"""MockGateway: the fake upstream every other test stands on.

Key, budget and per-key rate-limit behaviour is an emulation of the LiteLLM proxy's documented
shapes (the real paths need the proxy's database, which cannot be installed offline); the error
statuses and messages follow LiteLLM 1.106.2's source and, for ``litellm_version="legacy"``, the
2024-25 releases.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import jsonschema  # type: ignore[import-untyped]
import openai
import pytest
from pydantic import BaseModel, Field, SecretStr

from gatewaykit.testing import ERROR_KINDS, Behavior, MockGateway, RecordedRequest

USER: Any = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def server() -> Iterator[MockGateway]:
    with MockGateway() as gw:
        yield gw


@pytest.fixture
def gw(server: MockGateway) -> MockGateway:
    server.reset()
    return server


@pytest.fixture(scope="module")
def legacy_server() -> Iterator[MockGateway]:
    with MockGateway(litellm_version="legacy") as gw:
        yield gw


@pytest.fixture
def legacy(legacy_server: MockGateway) -> MockGateway:
    legacy_server.reset()
    return legacy_server


def chat(gw: MockGateway, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    body.setdefault("model", "m")
    body.setdefault("messages", USER)
    return httpx.post(f"{gw.base_url}/chat/completions", json=body, headers=headers, timeout=30)


def sse_events(text: str) -> list[Any]:
    """Parsed ``data:`` payloads; ``[DONE]`` kept as the string."""
    events: list[Any] = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def client(gw: MockGateway, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="sk-test", max_retries=0, **kwargs)


# -- plain chat -------------------------------------------------------------------------------


def test_json_completion_echoes_model_and_prompt_with_usage(gw: MockGateway) -> None:
    r = chat(gw, model="gpt-4o-mini")
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "gpt-4o-mini"
    choice = data["choices"][0]
    assert choice["message"]["content"] == "Echo: hello there"
    assert choice["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["prompt_tokens"] >= 1 and usage["completion_tokens"] >= 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_openai_sdk_round_trip(gw: MockGateway) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(model="m", messages=USER)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Echo: hello there"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert raw.headers["x-litellm-model-id"] == "m"


def test_list_content_parts_and_deterministic_answer(gw: MockGateway) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "part one"}]}]
    first = chat(gw, messages=messages).json()["choices"][0]["message"]["content"]
    second = chat(gw, messages=messages).json()["choices"][0]["message"]["content"]
    assert first == second == "Echo: part one"


def test_explicit_content_refusal_and_finish_reason(gw: MockGateway) -> None:
    gw.script("a", Behavior(content="fixed answer", finish_reason="content_filter"))
    gw.script("b", Behavior(refusal="I can't help with that."))
    a = chat(gw, model="a").json()["choices"][0]
    assert a["message"]["content"] == "fixed answer"
    assert a["finish_reason"] == "content_filter"
    b = chat(gw, model="b").json()["choices"][0]["message"]
    assert b["content"] is None
    assert b["refusal"] == "I can't help with that."


def test_n_greater_than_one_is_a_clear_400(gw: MockGateway) -> None:
    r = chat(gw, n=2)
    assert r.status_code == 400
    assert "n > 1" in r.json()["error"]["message"]


def test_stop_sequence_cuts_content(gw: MockGateway) -> None:
    r = chat(gw, messages=[{"role": "user", "content": "one two three four"}], stop=["three"])
    assert r.json()["choices"][0]["message"]["content"] == "Echo: one two "
    r = chat(gw, messages=[{"role": "user", "content": "one two"}], stop="two")
    assert r.json()["choices"][0]["message"]["content"] == "Echo: one "


def test_max_tokens_truncates_and_reports_length(gw: MockGateway) -> None:
    long_prompt = [{"role": "user", "content": "word " * 100}]
    data = chat(gw, messages=long_prompt, max_tokens=5).json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert len(data["choices"][0]["message"]["content"]) <= 20
    data = chat(gw, messages=long_prompt, max_completion_tokens=3).json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] <= 3


def test_usage_override(gw: MockGateway) -> None:
    gw.script("m", Behavior(usage={"prompt_tokens": 1000, "completion_tokens": 10}))
    assert chat(gw).json()["usage"] == {
        "prompt_tokens": 1000,
        "completion_tokens": 10,
        "total_tokens": 1010,
    }


# -- streaming --------------------------------------------------------------------------------


def test_stream_has_role_content_finish_usage_and_done(gw: MockGateway) -> None:
    r = chat(
        gw,
        model="s",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream these words please"}],
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "x-litellm-call-id" in r.headers
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert len(content) >= 3  # split into several deltas
    assert "".join(content) == "Echo: stream these words please"
    finish = chunks[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["model"] == "s"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["total_tokens"] > 0
    # only the usage chunk carries usage (LangChain's streaming usage test counts them)
    assert sum(1 for c in chunks if c.get("usage")) == 1


def test_stream_without_include_usage_has_no_usage_chunk(gw: MockGateway) -> None:
    events = sse_events(chat(gw, stream=True).text)
    assert events[-1] == "[DONE]"
    assert all(e == "[DONE]" or e["choices"] for e in events)


def test_openai_sdk_stream_reassembles(gw: MockGateway) -> None:
    stream = client(gw).chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "Echo: hello there"
    assert usage is not None and usage.prompt_tokens > 0


# -- tool calls -------------------------------------------------------------------------------

MAGIC: Any = {
    "type": "function",
    "function": {
        "name": "magic_function",
        "description": "Applies a magic function to an input.",
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "integer"}},
            "required": ["input"],
        },
    },
}
CUSTOMER: Any = {
    "type": "function",
    "function": {
        "name": "create_customer",
        "parameters": {
            "type": "object",
            "properties": {
                "customer_name": {"type": "string"},
                "tier": {"enum": ["gold", "silver"]},
                "address": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}},
                },
                "tags": {"type": "array", "items": {"type": "string"}},
                "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["customer_name", "tier"],
        },
    },
}


def test_tool_call_uses_first_tool_and_prompt_number(gw: MockGateway) -> None:
    prompt = [{"role": "user", "content": "What is the value of magic_function(3)? Use the tool."}]
    data = chat(gw, messages=prompt, tools=[MAGIC, CUSTOMER]).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert call["function"]["name"] == "magic_function"
    assert json.loads(call["function"]["arguments"]) == {"input": 3}


def test_named_tool_choice_with_quoted_unicode_string(gw: MockGateway) -> None:
    prompt = [{"role": "user", "content": "Create a customer named '你好啊集团' in 10001."}]
    r = chat(
        gw,
        messages=prompt,
        tools=[MAGIC, CUSTOMER],
        tool_choice={"type": "function", "function": {"name": "create_customer"}},
    )
    call = r.json()["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "create_customer"
    assert "你好啊集团" in r.text  # unescaped on the wire, as the unicode standard test expects
    args = json.loads(call["function"]["arguments"])
    jsonschema.validate(args, CUSTOMER["function"]["parameters"])
    assert args["customer_name"] == "你好啊集团"
    assert args["tier"] == "gold"
    assert args["address"]["zip"] == 10001
    assert args["tags"] == ["你好啊集团"]


def test_string_default_is_pirate_and_apostrophes_are_not_quotes(gw: MockGateway) -> None:
    prompt = [{"role": "user", "content": "What's the name? Don't know."}]
    call = chat(gw, messages=prompt, tools=[CUSTOMER]).json()["choices"][0]["message"]
    args = json.loads(call["tool_calls"][0]["function"]["arguments"])
    assert args["customer_name"] == "pirate"


def test_tool_choice_none_and_tool_result_answer_with_text(gw: MockGateway) -> None:
    data = chat(gw, tools=[MAGIC], tool_choice="none").json()
    assert data["choices"][0]["message"]["content"] == "Echo: hello there"
    history = [
        {"role": "user", "content": "magic_function(3)?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "magic_function", "arguments": '{"input": 3}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "5"},
    ]
    data = chat(gw, messages=history, tools=[MAGIC]).json()
    message = data["choices"][0]["message"]
    assert "tool_calls" not in message
    assert "5" in message["content"]
    assert data["choices"][0]["finish_reason"] == "stop"


def test_tool_without_arguments(gw: MockGateway) -> None:
    tool = {"type": "function", "function": {"name": "noop", "parameters": {}}}
    call = chat(gw, tools=[tool]).json()["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "noop", "arguments": "{}"}


def test_streamed_tool_call_deltas_reassemble(gw: MockGateway) -> None:
    prompt: Any = [{"role": "user", "content": "Create customer 'Ada' in 94110"}]
    plain = chat(gw, messages=prompt, tools=[CUSTOMER]).json()
    expected = json.loads(plain["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    stream = client(gw).chat.completions.create(
        model="m",
        messages=prompt,
        tools=[CUSTOMER],
        stream=True,
    )
    name, arguments, ids, finish, argument_deltas = "", "", set(), None, 0
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            assert delta.index == 0
            if delta.id:
                ids.add(delta.id)
            if delta.function and delta.function.name:
                name += delta.function.name
            if delta.function and delta.function.arguments:
                arguments += delta.function.arguments
                argument_deltas += 1
    assert name == "create_customer"
    assert len(ids) == 1 and next(iter(ids)).startswith("call_")
    assert argument_deltas >= 2
    assert json.loads(arguments) == expected
    assert finish == "tool_calls"


def test_explicit_tool_calls_both_forms(gw: MockGateway) -> None:
    gw.script(
        "m",
        Behavior(
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Paris"}},
                {
                    "id": "call_x",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'},
                },
            ]
        ),
    )
    calls = chat(gw).json()["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert calls[1]["id"] == "call_x"


def test_json_behavior_becomes_tool_arguments(gw: MockGateway) -> None:
    gw.script("m", Behavior(json={"input": 42}))
    call = chat(gw, tools=[MAGIC]).json()["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"input": 42}


# -- structured output ------------------------------------------------------------------------


class Address(BaseModel):
    street: str
    city: str
    zip_code: int = Field(ge=10000, le=99999)


class Pet(BaseModel):
    name: str
    species: Literal["cat", "dog", "parrot"]
    age: int


class Person(BaseModel):
    name: str
    mood: Literal["happy", "sad"]
    score: float
    active: bool
    address: Address
    pets: list[Pet]
    nickname: str | None = None
    previous: list[Address] = []


def json_schema_format(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": model.__name__, "schema": model.model_json_schema()},
    }


def test_json_schema_output_validates_against_nested_schema(gw: MockGateway) -> None:
    prompt = [{"role": "user", "content": "Describe 'Ada', aged 36."}]
    data = chat(gw, messages=prompt, response_format=json_schema_format(Person)).json()
    content = data["choices"][0]["message"]["content"]
    person = Person.model_validate_json(content)
    jsonschema.validate(json.loads(content), Person.model_json_schema())
    assert person.name == "Ada"
    assert person.mood == "happy"
    assert person.address.zip_code == 10000  # 36 clamped into [10000, 99999]
    assert len(person.pets) == 1 and person.pets[0].species == "cat"
    assert person.pets[0].age == 36


def test_json_schema_streamed_content_is_the_same_json(gw: MockGateway) -> None:
    fmt = json_schema_format(Person)
    plain = chat(gw, response_format=fmt).json()["choices"][0]["message"]["content"]
    events = sse_events(chat(gw, response_format=fmt, stream=True).text)
    pieces = [
        e["choices"][0]["delta"].get("content") or ""
        for e in events
        if e != "[DONE]" and e["choices"]
    ]
    assert sum(1 for p in pieces if p) >= 2
    assert "".join(pieces) == plain


def test_json_object_keyed_by_quoted_words(gw: MockGateway) -> None:
    prompt = [
        {
            "role": "user",
            "content": "Tell me a joke about cats. Return the result as a JSON with 'setup' and "
            "'punchline' keys. Return nothing other than JSON.",
        }
    ]
    content = chat(gw, messages=prompt, response_format={"type": "json_object"}).json()
    obj = json.loads(content["choices"][0]["message"]["content"])
    assert set(obj) == {"setup", "punchline"}
    fallback = chat(gw, response_format={"type": "json_object"}).json()
    assert json.loads(fallback["choices"][0]["message"]["content"]) == {
        "result": "Echo: hello there"
    }


def test_explicit_json_and_invalid_json(gw: MockGateway) -> None:
    gw.script("good", Behavior(json={"answer": 42}))
    gw.script("bad", Behavior(invalid_json=True))
    good = chat(gw, model="good").json()["choices"][0]["message"]["content"]
    assert json.loads(good) == {"answer": 42}
    bad = chat(gw, model="bad", response_format=json_schema_format(Pet)).json()
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad["choices"][0]["message"]["content"])
    # invalid_json only affects JSON answers
    plain = chat(gw, model="bad").json()["choices"][0]["message"]["content"]
    assert plain == "Echo: hello there"


# -- errors -----------------------------------------------------------------------------------

EXPECTED: dict[str, tuple[int, int, Any, Any, str]] = {
    # kind: (current status, legacy status, current type, legacy type, message prefix)
    "rate_limit": (429, 429, "throttling_error", "throttling_error", "litellm.RateLimitError: "),
    "server": (500, 500, "internal_server_error", "internal_server_error", "litellm.Internal"),
    "context_window": (
        400,
        400,
        "invalid_request_error",
        None,
        "litellm.ContextWindowExceededError: ",
    ),
    "content_policy": (
        400,
        400,
        "invalid_request_error",
        None,
        "litellm.ContentPolicyViolationError: ",
    ),
    "budget_exceeded": (
        422,
        400,
        "budget_exceeded",
        "budget_exceeded",
        "Budget has been exceeded!",
    ),
    "model_not_allowed": (
        403,
        401,
        "key_model_access_denied",
        "key_model_access_denied",
        "",
    ),
    "no_deployments": (
        429,
        429,
        "rate_limit_error",
        "None",
        "No deployments available for selected model, Try again in 5 seconds. Passed model=m",
    ),
    "auth": (401, 401, "auth_error", "auth_error", "Authentication Error"),
    "bad_request": (400, 400, "invalid_request_error", None, "litellm.BadRequestError: "),
    "not_found": (
        400,
        400,
        "invalid_request_error",
        "None",
        "/chat/completions: Invalid model name passed in model=m.",
    ),
}


@pytest.mark.parametrize("version", ["1.106.2", "legacy"])
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_error_kinds_have_litellm_shapes(
    kind: str, version: str, gw: MockGateway, legacy: MockGateway
) -> None:
    target = legacy if version == "legacy" else gw
    target.script("m", Behavior(error=kind))  # type: ignore[arg-type]
    r = chat(target)
    current_status, legacy_status, current_type, legacy_type, prefix = EXPECTED[kind]
    status = legacy_status if version == "legacy" else current_status
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["code"] == str(status)
    assert error["type"] == (legacy_type if version == "legacy" else current_type)
    assert error["message"].startswith(prefix)
    assert r.headers["x-litellm-version"] == ("1.106.2" if version == "1.106.2" else "1.55.8")
    assert "x-litellm-call-id" in r.headers


def test_model_not_allowed_messages_by_version(gw: MockGateway, legacy: MockGateway) -> None:
    gw.script("m", Behavior(error="model_not_allowed"))
    legacy.script("m", Behavior(error="model_not_allowed"))
    current = chat(gw).json()["error"]
    assert current["message"].startswith("The requested model 'm' is not available for this API")
    assert current["param"] == "model"
    old = chat(legacy).json()["error"]
    assert old["message"].startswith("key not allowed to access model. This key can only access")
    assert old["message"].endswith("Tried to access m")


def test_guardrail_blocked_shapes(gw: MockGateway, legacy: MockGateway) -> None:
    for target in (gw, legacy):
        target.script("m", Behavior(error="guardrail_blocked"))
    old = chat(legacy, guardrails=["pii-guard"])
    assert old.status_code == 400
    old_error = old.json()["error"]
    assert old_error["type"] == "None"
    assert old_error["message"]["error"] == "Violated guardrail policy"  # an object, not text
    assert "bedrock_guardrail_response" in old_error["message"]
    new = chat(gw, guardrails=["pii-guard"])
    new_error = new.json()["error"]
    assert new.status_code == 400
    assert new_error["message"] == "Violated guardrail policy"
    assert new_error["type"] == "invalid_request_error"
    assert new_error["provider_specific_fields"]["error"] == "Violated guardrail policy"
    assert "bedrock_guardrail_response" in new_error["provider_specific_fields"]


def test_every_error_kind_is_answered(gw: MockGateway) -> None:
    for kind in ERROR_KINDS:
        if kind == "timeout":
            continue
        gw.script(kind, Behavior(error=kind))  # type: ignore[arg-type]
        r = chat(gw, model=kind)
        assert 400 <= r.status_code < 600, kind
        assert r.json()["error"]["code"] == str(r.status_code)


def test_status_alone_picks_the_kind_and_error_alone_the_status(gw: MockGateway) -> None:
    gw.script("a", Behavior(status=503))
    gw.script("b", Behavior(status=429))
    gw.script("c", Behavior(error="context_window", status=413))
    a = chat(gw, model="a")
    assert a.status_code == 503
    assert a.json()["error"]["message"].startswith("litellm.ServiceUnavailableError: ")
    assert chat(gw, model="b").json()["error"]["type"] == "throttling_error"
    c = chat(gw, model="c")
    assert c.status_code == 413
    assert c.json()["error"]["code"] == "413"


def test_retry_after_header_and_openai_sdk_error_class(gw: MockGateway) -> None:
    gw.script("m", Behavior(error="rate_limit", retry_after=2))
    r = chat(gw)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    with pytest.raises(openai.RateLimitError) as info:
        client(gw).chat.completions.create(model="m", messages=USER)
    assert info.value.response.headers["retry-after"] == "2"
    gw.script("m", Behavior(error="no_deployments"))
    assert chat(gw).headers["retry-after"] == "5"


def test_sequence_plays_in_order_and_last_repeats(gw: MockGateway) -> None:
    gw.script("dep-b", [Behavior(status=429, retry_after=1), Behavior(status=500), Behavior()])
    statuses = [chat(gw, model="dep-b").status_code for _ in range(5)]
    assert statuses == [429, 500, 200, 200, 200]
    gw.script("dep-b", [Behavior(status=500), Behavior()])  # re-scripting restarts
    assert [chat(gw, model="dep-b").status_code for _ in range(2)] == [500, 200]


def test_wildcard_default_and_glob_patterns(gw: MockGateway) -> None:
    gw.script("*", Behavior(content="default"))
    gw.script("dep-*", Behavior(content="pattern"))
    gw.script("dep-exact", Behavior(content="exact"))

    def content(model: str) -> str:
        return str(chat(gw, model=model).json()["choices"][0]["message"]["content"])

    assert content("other") == "default"
    assert content("dep-7") == "pattern"
    assert content("dep-exact") == "exact"


def test_wildcard_sequence_advances_per_model(gw: MockGateway) -> None:
    gw.script("*", [Behavior(status=500), Behavior()])
    assert [chat(gw, model="x").status_code for _ in range(2)] == [500, 200]
    assert chat(gw, model="y").status_code == 500


def test_fail_rate_is_reproducible_with_a_seed() -> None:
    def pattern() -> list[int]:
        with MockGateway() as gw:
            gw.script("m", Behavior(fail_rate=0.3, seed=42, error="rate_limit"))
            return [chat(gw).status_code for _ in range(60)]

    first, second = pattern(), pattern()
    assert first == second
    assert set(first) == {200, 429}
    assert 5 <= first.count(429) <= 35


def test_fail_rate_bounds(gw: MockGateway) -> None:
    gw.script("never", Behavior(fail_rate=0.0, status=500))
    gw.script("always", Behavior(fail_rate=1.0))
    assert {chat(gw, model="never").status_code for _ in range(10)} == {200}
    assert {chat(gw, model="always").status_code for _ in range(10)} == {500}


# -- stream failures and timing ---------------------------------------------------------------


def test_stream_cut_after_drops_the_connection(gw: MockGateway) -> None:
    gw.script("m", Behavior(content="a b c d e f", stream_cut_after=2))
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            f"{gw.base_url}/chat/completions",
            json={"model": "m", "messages": USER, "stream": True},
            timeout=10,
        ) as r,
    ):
        assert r.status_code == 200
        for part in r.iter_bytes():
            received += part
    events = sse_events(received.decode())
    assert "[DONE]" not in events
    contents = [e["choices"][0]["delta"].get("content") for e in events[1:]]
    assert contents == ["a ", "b "]
    assert all(e["choices"][0]["finish_reason"] is None for e in events)


def test_stream_cut_is_seen_by_the_openai_sdk(gw: MockGateway) -> None:
    gw.script("m", Behavior(stream_cut_after=1))
    stream = client(gw).chat.completions.create(model="m", messages=USER, stream=True)
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for _ in stream:
            pass


def test_stream_error_after_sends_litellm_error_event(gw: MockGateway, legacy: MockGateway) -> None:
    gw.script("m", Behavior(content="a b c d", stream_error_after=2, error="rate_limit"))
    events = sse_events(chat(gw, stream=True).text)
    assert [e["choices"][0]["delta"].get("content") for e in events[1:3]] == ["a ", "b "]
    error = events[3]["error"]
    assert error["code"] == "429"
    assert error["message"].startswith("litellm.RateLimitError: ")
    assert events[-1] == "[DONE]"
    legacy.script("m", Behavior(stream_error_after=0))
    legacy_events = sse_events(chat(legacy, stream=True).text)
    assert legacy_events[-1]["error"]["code"] == "500"  # legacy: no [DONE] after the error
    # the OpenAI SDK raises on the error event
    gw.script("m", Behavior(stream_error_after=1))
    stream = client(gw).chat.completions.create(model="m", messages=USER, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    # stream_* fields do not apply to non-streamed calls ...
    assert chat(gw).status_code == 200
    # ... but an explicit error does, up front
    gw.script("m", Behavior(stream_error_after=1, error="server"))
    assert chat(gw).status_code == 500


def test_stall_after_pauses_then_finishes(gw: MockGateway) -> None:
    gw.script("m", Behavior(stall_after=1, stall_s=0.6))
    started = time.perf_counter()
    events = sse_events(chat(gw, stream=True).text)
    assert time.perf_counter() - started >= 0.55
    assert events[-1] == "[DONE]"


def test_stall_beyond_client_read_timeout(gw: MockGateway) -> None:
    gw.script("m", Behavior(stall_after=1, stall_s=30))
    received = b""
    started = time.perf_counter()
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream(
            "POST",
            f"{gw.base_url}/chat/completions",
            json={"model": "m", "messages": USER, "stream": True},
            timeout=httpx.Timeout(5, read=0.4),
        ) as r,
    ):
        for part in r.iter_bytes():
            received += part
    assert time.perf_counter() - started < 5
    assert len(sse_events(received.decode())) == 2  # role chunk + one content chunk


def test_latency_ttft_and_chunk_delay(gw: MockGateway) -> None:
    gw.script("slow", Behavior(latency_ms=150))
    started = time.perf_counter()
    assert chat(gw, model="slow").status_code == 200
    assert time.perf_counter() - started >= 0.14

    gw.script("ttft", Behavior(ttft_ms=200, chunk_delay_ms=50, content="a b c"))
    arrivals: list[float] = []
    started = time.perf_counter()
    with httpx.stream(
        "POST",
        f"{gw.base_url}/chat/completions",
        json={"model": "ttft", "messages": USER, "stream": True},
        timeout=10,
    ) as r:
        headers_at = time.perf_counter() - started
        for _ in r.iter_bytes():
            arrivals.append(time.perf_counter() - started)
    assert headers_at < 0.15  # headers first, then the wait for the first token
    assert arrivals[0] >= 0.19
    assert arrivals[-1] >= 0.29  # two 50 ms gaps between three chunks


def test_timeout_hangs_until_the_client_gives_up(gw: MockGateway) -> None:
    gw.script("m", Behavior(error="timeout"))
    started = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        chat_with_timeout(gw, 0.3)
    assert time.perf_counter() - started < 5
    gw.script("m", Behavior(error="timeout", hang_s=0.2))
    r = chat_with_timeout(gw, 5)
    assert r.status_code == 408
    assert r.json()["error"]["message"].startswith("litellm.Timeout: ")


def chat_with_timeout(gw: MockGateway, timeout: float) -> httpx.Response:
    return httpx.post(
        f"{gw.base_url}/chat/completions", json={"model": "m", "messages": USER}, timeout=timeout
    )


# -- headers and recording --------------------------------------------------------------------

SUCCESS_HEADERS = [
    "x-litellm-call-id",
    "x-litellm-model-id",
    "x-litellm-model-group",
    "x-litellm-model-api-base",
    "x-litellm-version",
    "x-litellm-response-cost",
    "x-litellm-key-spend",
    "x-litellm-response-duration-ms",
    "x-litellm-overhead-duration-ms",
    "x-litellm-attempted-retries",
    "x-litellm-attempted-fallbacks",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-reset-requests",
]


def test_success_headers_present_on_json_and_stream(gw: MockGateway) -> None:
    for stream in (False, True):
        r = chat(gw, model="gpt-4o", stream=stream)
        missing = [h for h in SUCCESS_HEADERS if h not in r.headers]
        assert not missing, (stream, missing)
        assert r.headers["x-litellm-model-id"] == "gpt-4o"
        assert r.headers["x-litellm-model-group"] == "gpt-4o"
        assert r.headers["x-litellm-model-api-base"] == gw.base_url
        assert float(r.headers["x-litellm-response-cost"]) > 0
        assert "x-litellm-cache-key" not in r.headers
        assert "x-litellm-applied-guardrails" not in r.headers


def test_cost_is_computed_from_usage(gw: MockGateway) -> None:
    r = chat(gw)
    usage = r.json()["usage"]
    expected = usage["prompt_tokens"] * 1e-6 + usage["completion_tokens"] * 2e-6
    assert float(r.headers["x-litellm-response-cost"]) == pytest.approx(expected)


def test_scripted_header_values(gw: MockGateway) -> None:
    gw.script(
        "m",
        Behavior(
            cost=0.25,
            model_id="dep-42",
            api_base="https://api.example.com/v1",
            model_group="gpt-group",
            attempted_fallbacks=1,
            attempted_retries=2,
            cache_key="ck-1",
            headers={"X-Custom": "yes"},
        ),
    )
    r = chat(gw, headers={"x-litellm-call-id": "call-from-client"}, guardrails=["pii", "toxicity"])
    h = r.headers
    assert h["x-litellm-call-id"] == "call-from-client"
    assert h["x-litellm-response-cost"] == "0.25"
    assert h["x-litellm-model-id"] == "dep-42"
    assert h["x-litellm-model-api-base"] == "https://api.example.com/v1"
    assert h["x-litellm-model-group"] == "gpt-group"
    assert h["x-litellm-attempted-fallbacks"] == "1"
    assert h["x-litellm-attempted-retries"] == "2"
    assert h["x-litellm-cache-key"] == "ck-1"
    assert h["x-litellm-applied-guardrails"] == "pii,toxicity"
    assert h["x-custom"] == "yes"


def test_requests_are_recorded_with_controls(gw: MockGateway) -> None:
    chat(
        gw,
        model="dep-a",
        headers={"X-LiteLLM-Tags": "a,b", "x-litellm-num-retries": "3"},
        metadata={"trace": "t1"},
        tags=["batch"],
        user="u-1",
        cache={"no-cache": True},
        disable_fallbacks=True,
    )
    chat(gw, model="dep-b")
    httpx.get(f"{gw.base_url}/models")
    httpx.get(f"{gw.url}/health/liveliness")  # health checks are not recorded
    records = gw.requests
    assert [r.model for r in records] == ["dep-a", "dep-b", None]
    first = records[0]
    assert isinstance(first, RecordedRequest)
    assert first.path == "/v1/chat/completions" and first.method == "POST"
    assert first.headers["x-litellm-tags"] == "a,b"
    assert first.headers["x-litellm-num-retries"] == "3"
    assert first.body is not None
    assert first.body["metadata"] == {"trace": "t1"}
    assert first.body["tags"] == ["batch"]
    assert first.body["user"] == "u-1"
    assert first.body["cache"] == {"no-cache": True}
    assert first.body["disable_fallbacks"] is True
    assert first.time <= records[1].time
    assert [r.model for r in gw.requests_for("dep-a")] == ["dep-a"]
    assert gw.count("dep-a") == 1
    assert gw.count() == 3
    gw.reset()
    assert gw.requests == [] and gw.count() == 0


def test_chat_completions_without_v1_prefix(gw: MockGateway) -> None:
    r = httpx.post(f"{gw.url}/chat/completions", json={"model": "m", "messages": USER})
    assert r.status_code == 200
    assert gw.requests[0].path == "/chat/completions"


def test_record_false_keeps_counts_only() -> None:
    with MockGateway(record=False) as gw:
        chat(gw)
        chat(gw)
        assert gw.requests == []
        assert gw.count("m") == 2


def test_invalid_json_body_is_a_400(gw: MockGateway) -> None:
    r = httpx.post(f"{gw.base_url}/chat/completions", content=b"{not json")
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert gw.requests[0].body is None


# -- discovery and health ---------------------------------------------------------------------


def test_models_health_and_unknown_paths(gw: MockGateway) -> None:
    gw.script("dep-a", Behavior())
    gw.script("*", Behavior())
    gw.add_key("sk-virtual-models", models=["gpt-4o"])
    listing = httpx.get(f"{gw.base_url}/models", headers=auth("sk-virtual-models")).json()
    ids = [m["id"] for m in listing["data"]]
    assert ids == ["gpt-4o"]
    gw.reset()
    gw.script("dep-a", Behavior())
    gw.script("dep-b", Behavior())
    listing = httpx.get(f"{gw.base_url}/models").json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["dep-a", "dep-b"]
    assert httpx.get(f"{gw.url}/health/liveliness").json() == "I'm alive!"
    readiness = httpx.get(f"{gw.url}/health/readiness").json()
    assert readiness["status"] == "healthy"
    assert readiness["litellm_version"] == "1.106.2"
    assert httpx.get(f"{gw.url}/nope").status_code == 404
    assert httpx.get(f"{gw.base_url}/chat/completions").status_code == 405


# -- virtual keys (proxy emulation) -----------------------------------------------------------


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_budget_exhaustion_after_n_calls(gw: MockGateway, legacy: MockGateway) -> None:
    for target, status in ((gw, 422), (legacy, 400)):
        target.add_key("sk-virtual-1", models=["gpt-4o"], max_budget=0.01)
        target.script("gpt-4o", Behavior(cost=0.004))
        spends = []
        for _ in range(3):
            r = chat(target, model="gpt-4o", headers=auth("sk-virtual-1"))
            assert r.status_code == 200
            spends.append(float(r.headers["x-litellm-key-spend"]))
            assert r.headers["x-litellm-key-max-budget"] == "0.01"
        assert spends == pytest.approx([0.004, 0.008, 0.012])
        r = chat(target, model="gpt-4o", headers=auth("sk-virtual-1"))
        assert r.status_code == status
        error = r.json()["error"]
        assert error["type"] == "budget_exceeded"
        assert error["message"].startswith("Budget has been exceeded!")
        assert "Current cost: 0.012" in error["message"]
        assert error["message"].endswith("Max budget: 0.01")
        assert "sk-virtual-1" not in r.text
        info = target.key_info("sk-virtual-1")
        assert info is not None and info["spend"] == pytest.approx(0.012)


def test_rpm_limit_answers_with_proxy_limiter_429(gw: MockGateway) -> None:
    gw.add_key("sk-rpm", rpm_limit=2)
    first = chat(gw, headers=auth("sk-rpm"))
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert chat(gw, headers=auth("sk-rpm")).status_code == 200
    r = chat(gw, headers=auth("sk-rpm"))
    assert r.status_code == 429
    assert r.headers["retry-after"] == "60"
    assert r.headers["rate_limit_type"] == "requests"
    assert "reset_at" in r.headers
    error = r.json()["error"]
    assert error["message"].startswith("Rate limit exceeded for api_key: ")
    assert "Limit type: requests. Current limit: 2, Remaining: 0." in error["message"]
    assert error["type"] == "throttling_error"
    assert "sk-rpm" not in r.text


def test_tpm_limit(gw: MockGateway) -> None:
    gw.add_key("sk-tpm", tpm_limit=10)
    gw.script("m", Behavior(usage={"prompt_tokens": 8, "completion_tokens": 4}))
    assert chat(gw, headers=auth("sk-tpm")).status_code == 200
    r = chat(gw, headers=auth("sk-tpm"))
    assert r.status_code == 429
    assert r.headers["rate_limit_type"] == "tokens"


def test_model_access_by_version(gw: MockGateway, legacy: MockGateway) -> None:
    for target, status in ((gw, 403), (legacy, 401)):
        target.add_key("sk-narrow", models=["gpt-4o", "claude-*"])
        assert chat(target, model="gpt-4o", headers=auth("sk-narrow")).status_code == 200
        assert chat(target, model="claude-3", headers=auth("sk-narrow")).status_code == 200
        r = chat(target, model="gpt-5", headers=auth("sk-narrow"))
        assert r.status_code == status
        error = r.json()["error"]
        assert error["type"] == "key_model_access_denied"
        assert error["param"] == "model"
    legacy_message = r.json()["error"]["message"]
    assert "models=['gpt-4o', 'claude-*']. Tried to access gpt-5" in legacy_message


def test_unknown_and_missing_keys_are_auth_errors_without_echoing_the_key(
    gw: MockGateway,
) -> None:
    gw.add_key("sk-known")
    secret = "sk-this-is-a-very-secret-key-1234"
    r = chat(gw, headers=auth(secret))
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["type"] == "auth_error"
    assert error["message"].startswith(
        "Authentication Error, Invalid proxy server token passed. Received API Key = sk-...1234"
    )
    assert "Key Hash (Token) =" in error["message"]
    assert secret not in r.text
    missing = chat(gw)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "auth_error"
    # other auth header spellings the proxy accepts
    assert chat(gw, headers={"x-litellm-api-key": "sk-known"}).status_code == 200
    assert chat(gw, headers={"api-key": "sk-known"}).status_code == 200


def test_master_key_and_require_auth() -> None:
    with MockGateway(master_key="sk-master") as gw:
        assert chat(gw).status_code == 401
        assert chat(gw, headers=auth("sk-master")).status_code == 200
        assert chat(gw, headers=auth("sk-wrong")).status_code == 401
        r = httpx.get(f"{gw.url}/key/info", params={"key": "sk-nope"}, headers=auth("sk-master"))
        assert r.status_code == 401
        gw.add_key("sk-v", max_budget=1.0)
        r = httpx.get(f"{gw.url}/key/info", params={"key": "sk-v"}, headers=auth("sk-master"))
        assert r.json()["info"]["max_budget"] == 1.0
    with MockGateway(require_auth=True) as gw:
        assert chat(gw, headers=auth("anything")).status_code == 401


# -- modes and lifecycle ----------------------------------------------------------------------


def test_process_mode_round_trip() -> None:
    with MockGateway("process", litellm_version="legacy") as gw:
        gw.script("dep-b", [Behavior(status=429, retry_after=1), Behavior(content="ok")])
        gw.add_key("sk-proc", models=["dep-b"], max_budget=10.0)
        first = chat(gw, model="dep-b", headers=auth("sk-proc"))
        second = chat(gw, model="dep-b", headers=auth("sk-proc"), metadata={"k": "v"})
        assert first.status_code == 429 and first.headers["retry-after"] == "1"
        assert second.json()["choices"][0]["message"]["content"] == "ok"
        assert chat(gw, model="other", headers=auth("sk-proc")).status_code == 401  # legacy 401
        records = gw.requests_for("dep-b")
        assert len(records) == 2 and all(isinstance(r, RecordedRequest) for r in records)
        assert records[1].body is not None and records[1].body["metadata"] == {"k": "v"}
        assert records[1].headers["authorization"] == "Bearer sk-proc"
        assert gw.count("dep-b") == 2 and gw.count() == 3
        info = gw.key_info("sk-proc")
        assert info is not None and info["spend"] > 0
        gw.reset()
        assert gw.requests == []
        assert chat(gw, model="dep-b").status_code == 200  # no keys, no scripts
        with pytest.raises(ValueError):
            gw._ctl().script("m", [Behavior.from_dict({"status": 200})])  # rejected client-side


def test_process_mode_control_endpoint_needs_the_token() -> None:
    with MockGateway("process") as gw:
        r = httpx.post(f"{gw.url}/__mock__/reset")
        assert r.status_code == 403


def test_start_stop_leaves_no_thread_or_process() -> None:
    before = set(threading.enumerate())
    gw = MockGateway().start()
    assert gw.start() is gw  # idempotent
    assert len(set(threading.enumerate()) - before) == 1
    port = gw.port
    gw.stop()
    gw.stop()
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health/liveliness")

    proc_gw = MockGateway("process").start()
    process = proc_gw._process
    assert process is not None and process.poll() is None
    proc_gw.stop()
    assert process.poll() is not None
    assert set(threading.enumerate()) - before == set()


def test_stop_is_prompt_while_requests_hang() -> None:
    gw = MockGateway().start()
    gw.script("m", Behavior(error="timeout", hang_s=30))
    worker = threading.Thread(target=lambda: _swallow(lambda: chat_with_timeout(gw, 20)))
    worker.start()
    time.sleep(0.2)
    started = time.perf_counter()
    gw.stop()
    assert time.perf_counter() - started < 3
    worker.join(5)
    assert not worker.is_alive()


def _swallow(fn: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):
        fn()


async def test_async_context_manager() -> None:
    async with MockGateway() as gw, httpx.AsyncClient(base_url=gw.base_url) as http:
        r = await http.post("/chat/completions", json={"model": "m", "messages": USER})
        assert r.status_code == 200
    assert not gw.running


def test_not_started_is_a_clear_error() -> None:
    gw = MockGateway()
    with pytest.raises(RuntimeError, match="not started"):
        _ = gw.base_url
    with pytest.raises(RuntimeError, match="not started"):
        gw.script("m", Behavior())


# -- Behavior ---------------------------------------------------------------------------------


def test_behavior_validation_and_json_round_trip() -> None:
    with pytest.raises(ValueError, match="error"):
        Behavior(error="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fail_rate"):
        Behavior(fail_rate=1.5)
    with pytest.raises(ValueError, match="status"):
        Behavior(status=200)
    with pytest.raises(ValueError, match="unknown"):
        Behavior.from_dict({"colour": "red"})
    b = Behavior(status=429, retry_after=1, headers={"a": "b"}, tool_calls=[{"name": "x"}])
    assert b.to_dict() == {
        "status": 429,
        "retry_after": 1,
        "headers": {"a": "b"},
        "tool_calls": [{"name": "x"}],
    }
    assert Behavior.from_dict(json.loads(json.dumps(b.to_dict()))) == b
    assert Behavior().to_dict() == {}


# -- LangChain on top -------------------------------------------------------------------------


def test_chat_openai_invoke_stream_tools_and_structured_output(gw: MockGateway) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def magic_function(input: int) -> int:
        """Applies a magic function to an input."""
        return input + 2

    llm = ChatOpenAI(
        model="gpt-4o",
        base_url=gw.base_url,
        api_key=SecretStr("sk-x"),
        stream_usage=True,
        max_retries=0,
    )
    message = llm.invoke("hi")
    assert message.text == "Echo: hi"
    assert message.usage_metadata is not None
    assert message.response_metadata["model_name"] == "gpt-4o"
    chunks = list(llm.stream("one two three"))
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    assert full.text == "Echo: one two three"
    assert full.usage_metadata is not None
    call = llm.bind_tools([magic_function]).invoke("What is magic_function(3)?")
    assert call.tool_calls[0]["name"] == "magic_function"
    assert call.tool_calls[0]["args"] == {"input": 3}
    person = llm.with_structured_output(Person, method="json_schema").invoke("'Ada', 36")
    assert isinstance(person, Person) and person.name == "Ada"

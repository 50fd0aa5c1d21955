"""structured() against MockGateway: validation, repair with feedback, refusals, truncation,
methods, fallbacks, include_raw, async, streaming partials, tracing."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from typing import Any, Literal
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from pydantic import BaseModel
from typing_extensions import TypedDict

from gatewaykit import (
    GatewayChatModel,
    GatewayError,
    RouterChatModel,
    StructuredOutputError,
    UpstreamError,
)
from gatewaykit.structured import (
    StructuredAttempt,
    StructuredOutputInvalid,
    StructuredOutputRefused,
    StructuredOutputTruncated,
    choose_method,
    structured,
)
from gatewaykit.testing import Behavior, MockGateway

METHODS = ["json_schema", "function_calling", "json_mode"]

# langchain-openai warns on every structured stream that it cannot keep the response headers.
pytestmark = pytest.mark.filterwarnings("ignore:Cannot currently include response headers")


class CodeReview(BaseModel):
    """A code review verdict."""

    score: int
    issues: list[str]
    recommendation: Literal["approve", "request_changes", "needs_work"]


GOOD = {"score": 7, "issues": ["no tests for the parser"], "recommendation": "request_changes"}
EXPECTED = CodeReview(**GOOD)  # type: ignore[arg-type]
WRONG_TYPES = {"score": "high", "issues": "none", "recommendation": "approve"}
PROMPT = "Review this diff: + def parse(x): return eval(x)"


@pytest.fixture(scope="module")
def gw() -> Iterator[MockGateway]:
    with MockGateway() as g:
        yield g


@pytest.fixture(autouse=True)
def _reset(gw: MockGateway) -> None:
    gw.reset()


def llm(gw: MockGateway, model: str = "m", **kw: Any) -> GatewayChatModel:
    return GatewayChatModel(base_url=gw.base_url, api_key="k", model=model, max_retries=0, **kw)


def router_config(gw: MockGateway, *deployments: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": group,
                "litellm_params": {
                    "model": f"openai/{name}",
                    "api_base": gw.base_url,
                    "api_key": "k",
                },
                "model_info": {"id": name, **info},
            }
            for group, name, info in deployments
        ]
    }


def router(gw: MockGateway, **info: Any) -> RouterChatModel:
    info = info or {"supports_response_schema": True}
    return RouterChatModel.from_config(router_config(gw, ("g", "dep-1", info)), model="g")


def body(gw: MockGateway, model: str, i: int) -> dict[str, Any]:
    requests = gw.requests_for(model)
    assert len(requests) > i, f"only {len(requests)} request(s) for {model}"
    b = requests[i].body
    assert b is not None
    return b


def last_user_text(b: dict[str, Any]) -> str:
    user = [m for m in b["messages"] if m["role"] == "user"]
    return str(user[-1]["content"])


# ---------------------------------------------------------------- method choice


def test_method_follows_declared_capabilities(gw: MockGateway) -> None:
    assert choose_method(llm(gw)) == "function_calling"  # unknown: tools are the common ground
    assert choose_method(llm(gw, profile={"structured_output": True})) == "json_schema"
    assert choose_method(llm(gw, profile={"tool_calling": False})) == "json_mode"
    assert choose_method(router(gw, supports_response_schema=True)) == "json_schema"
    mixed = RouterChatModel.from_config(
        router_config(
            gw,
            ("g", "a", {"supports_response_schema": True}),
            ("g", "b", {"supports_response_schema": False}),
        ),
        model="g",
    )
    assert choose_method(mixed) == "function_calling"
    no_tools = router(gw, supports_response_schema=False, supports_function_calling=False)
    assert choose_method(no_tools) == "json_mode"
    fake = GenericFakeChatModel(messages=iter([AIMessage(content=json.dumps(GOOD))]))
    assert choose_method(fake) == "json_mode"  # cannot bind tools
    # OpenAI's response_format only goes to OpenAI-compatible models
    fake.profile = {"structured_output": True}
    assert choose_method(fake) == "json_mode"


def test_json_schema_strict_request_and_valid_answer(gw: MockGateway) -> None:
    gw.script("m", Behavior(json=GOOD))
    review = structured(llm(gw, profile={"structured_output": True}), CodeReview)
    assert review.method == "json_schema"
    assert review.invoke(PROMPT) == EXPECTED
    fmt = body(gw, "m", 0)["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "CodeReview"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["additionalProperties"] is False
    assert gw.count("m") == 1


def test_strict_is_off_for_a_schema_strict_mode_cannot_express(gw: MockGateway) -> None:
    class Loose(BaseModel):
        score: int
        counts: dict[str, int]  # an open object: strict mode cannot say "any key"

    gw.script("m", Behavior(json={"score": 3, "counts": {"a": 1}}))
    out = structured(llm(gw), Loose, method="json_schema").invoke("x")
    assert out == Loose(score=3, counts={"a": 1})
    assert body(gw, "m", 0)["response_format"]["json_schema"]["strict"] is False


def test_function_calling_forces_one_tool_call(gw: MockGateway) -> None:
    gw.script("m", Behavior(json=GOOD))
    assert structured(llm(gw), CodeReview).invoke(PROMPT) == EXPECTED
    b = body(gw, "m", 0)
    assert b["tool_choice"] == {"type": "function", "function": {"name": "CodeReview"}}
    assert b["parallel_tool_calls"] is False
    assert "response_format" not in b


def test_json_mode_puts_the_schema_in_a_system_message(gw: MockGateway) -> None:
    gw.script("m", Behavior(json=GOOD))
    out = structured(llm(gw), CodeReview, method="json_mode").invoke(
        [("system", "You review Python code."), ("human", PROMPT)]
    )
    assert out == EXPECTED
    b = body(gw, "m", 0)
    assert b["response_format"] == {"type": "json_object"}
    system = b["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("You review Python code.")
    assert '"recommendation"' in system["content"] and "JSON object" in system["content"]
    assert len([m for m in b["messages"] if m["role"] == "system"]) == 1


def test_any_chat_model_works_through_json_mode() -> None:
    fake = GenericFakeChatModel(
        messages=iter([AIMessage(content="Sure!"), AIMessage(content=json.dumps(GOOD))])
    )
    out = structured(fake, CodeReview, include_raw=True).invoke(PROMPT)
    assert out["parsed"] == EXPECTED
    assert [a.reason for a in out["attempts"]] == ["invalid_json", None]


# ---------------------------------------------------------------- repair with feedback


@pytest.mark.parametrize("method", METHODS)
def test_invalid_json_is_repaired_with_the_decoder_error(gw: MockGateway, method: str) -> None:
    gw.script("m", [Behavior(json=GOOD, invalid_json=True), Behavior(json=GOOD)])
    out = structured(llm(gw), CodeReview, method=method, include_raw=True).invoke(PROMPT)  # type: ignore[arg-type]
    assert out["parsed"] == EXPECTED and out["parsing_error"] is None
    assert [a.reason for a in out["attempts"]] == ["invalid_json", None]
    assert gw.count("m") == 2
    repair = body(gw, "m", 1)
    feedback = last_user_text(repair)
    assert "not valid JSON" in feedback
    assert "Expecting property name enclosed in double quotes" in feedback
    # the failed answer goes back as the assistant's turn, exactly as it was sent
    assistant = [m for m in repair["messages"] if m["role"] == "assistant"][-1]
    sent = out["attempts"][0].output
    assert sent.endswith(",")
    if method == "function_calling":
        assert assistant["tool_calls"][0]["function"]["arguments"] == sent
        tool = [m for m in repair["messages"] if m["role"] == "tool"]
        assert tool and tool[0]["tool_call_id"] == assistant["tool_calls"][0]["id"]
    else:
        assert assistant["content"] == sent


@pytest.mark.parametrize("method", METHODS)
def test_schema_violation_is_repaired_with_every_validation_error(
    gw: MockGateway, method: str
) -> None:
    gw.script("m", [Behavior(json=WRONG_TYPES), Behavior(json=GOOD)])
    review = structured(llm(gw), CodeReview, method=method)  # type: ignore[arg-type]
    assert review.invoke(PROMPT) == EXPECTED
    feedback = last_user_text(body(gw, "m", 1))
    assert "does not match the schema (2 errors)" in feedback
    assert (
        "- score: Input should be a valid integer, unable to parse string as an integer (got 'high')"
        in feedback
    )
    assert "- issues: Input should be a valid list (got 'none')" in feedback
    # the original request comes first, the failed answer and the errors after it
    messages = [m for m in body(gw, "m", 1)["messages"] if m["role"] != "system"]
    expected = ["user", "assistant", "tool", "user"] if method == "function_calling" else None
    assert [m["role"] for m in messages] == (expected or ["user", "assistant", "user"])
    assert messages[0]["content"] == PROMPT


def test_missing_field_and_wrong_enum_are_named(gw: MockGateway) -> None:
    bad = {"score": 4, "recommendation": "LGTM"}
    gw.script("m", [Behavior(json=bad), Behavior(json=GOOD)])
    assert structured(llm(gw), CodeReview, method="json_schema").invoke(PROMPT) == EXPECTED
    feedback = last_user_text(body(gw, "m", 1))
    assert "- issues: Field required" in feedback
    assert (
        "- recommendation: Input should be 'approve', 'request_changes' or 'needs_work' (got 'LGTM')"
        in feedback
    )


def test_prose_instead_of_a_tool_call_is_never_none(gw: MockGateway) -> None:
    gw.script("m", Behavior(content="Looks good to me, ship it."))
    with pytest.raises(StructuredOutputInvalid) as info:
        structured(llm(gw), CodeReview, method="function_calling", max_repairs=1).invoke(PROMPT)
    assert [a.reason for a in info.value.attempts] == ["no_tool_call", "no_tool_call"]
    feedback = last_user_text(body(gw, "m", 1))
    assert "instead of calling the `CodeReview` tool" in feedback


def test_malformed_tool_arguments_are_never_none(gw: MockGateway) -> None:
    gw.script("m", Behavior(json=GOOD, invalid_json=True))
    with pytest.raises(StructuredOutputInvalid, match="not valid JSON"):
        structured(llm(gw), CodeReview, method="function_calling", max_repairs=0).invoke(PROMPT)
    assert gw.count("m") == 1


@pytest.mark.parametrize(
    ("content", "how"),
    [
        (f"```json\n{json.dumps(GOOD)}\n```", "fenced"),
        (f"Here is my review:\n{json.dumps(GOOD)}\nHope this helps!", "extracted"),
    ],
)
def test_fenced_or_wrapped_json_is_used_without_a_new_call(
    gw: MockGateway, content: str, how: str
) -> None:
    gw.script("m", Behavior(content=content))
    out = structured(llm(gw), CodeReview, method="json_schema", include_raw=True).invoke(PROMPT)
    assert out["parsed"] == EXPECTED
    assert out["attempts"][0].salvaged == how
    assert out["raw"].response_metadata["structured"]["salvaged"] == how
    assert gw.count("m") == 1


def test_json_in_the_text_instead_of_the_tool_call_is_used(gw: MockGateway) -> None:
    gw.script("m", Behavior(content=f"```json\n{json.dumps(GOOD)}\n```"))
    out = structured(llm(gw), CodeReview, method="function_calling", include_raw=True).invoke("x")
    assert out["parsed"] == EXPECTED and out["attempts"][0].salvaged == "content"
    assert gw.count("m") == 1


def test_repairs_are_bounded_and_every_attempt_is_kept(gw: MockGateway) -> None:
    gw.script(
        "m",
        [
            Behavior(content="I would rather explain in words."),
            Behavior(json=GOOD, invalid_json=True),
            Behavior(json=WRONG_TYPES),
            Behavior(json=GOOD),  # never reached
        ],
    )
    with pytest.raises(StructuredOutputInvalid) as info:
        structured(llm(gw), CodeReview, method="json_schema", max_repairs=2).invoke(PROMPT)
    err = info.value
    assert isinstance(err, StructuredOutputError) and isinstance(err, GatewayError)
    assert err.reason == "invalid" and err.kind == "structured_output"
    assert err.is_retryable is False
    assert gw.count("m") == 3
    assert [a.number for a in err.attempts] == [1, 2, 3]
    assert [a.repair for a in err.attempts] == [0, 1, 2]
    assert [a.reason for a in err.attempts] == ["invalid_json", "invalid_json", "schema_violation"]
    assert err.attempts[0].output == "I would rather explain in words."
    assert err.attempts[1].output.endswith(",")
    assert json.loads(err.attempts[2].output) == WRONG_TYPES
    assert all(isinstance(a, StructuredAttempt) and a.raw is not None for a in err.attempts)
    assert "score: Input should be a valid integer" in (err.attempts[2].error or "")
    assert "no valid CodeReview after 3 attempt(s)" in str(err)
    assert err.deployment == "m"
    json.dumps([a.as_dict() for a in err.attempts])  # loggable
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is StructuredOutputInvalid and len(again.attempts) == 3


def test_max_repairs_zero_means_one_call(gw: MockGateway) -> None:
    gw.script("m", Behavior(json=WRONG_TYPES))
    with pytest.raises(StructuredOutputInvalid):
        structured(llm(gw), CodeReview, max_repairs=0).invoke(PROMPT)
    assert gw.count("m") == 1


# ---------------------------------------------------------------- refusal and truncation


@pytest.mark.parametrize("method", METHODS)
def test_refusal_is_typed_and_never_retried_or_sent_elsewhere(gw: MockGateway, method: str) -> None:
    gw.script("m", Behavior(refusal="I can't help with reviewing that."))
    gw.script("backup", Behavior(json=GOOD))
    review = structured(llm(gw), CodeReview, method=method, fallback=llm(gw, "backup"))  # type: ignore[arg-type]
    with pytest.raises(StructuredOutputRefused) as info:
        review.invoke(PROMPT)
    err = info.value
    assert err.reason == "refusal" and err.refusal == "I can't help with reviewing that."
    assert [a.reason for a in err.attempts] == ["refusal"]
    assert gw.count("m") == 1 and gw.count("backup") == 0


@pytest.mark.parametrize("method", METHODS)
def test_truncation_says_to_raise_max_tokens_and_is_not_re_asked(
    gw: MockGateway, method: str
) -> None:
    cut = '{"score": 7, "issues": ["no tests for'
    if method == "function_calling":
        gw.script(
            "m",
            Behavior(tool_calls=[{"name": "CodeReview", "arguments": cut}], finish_reason="length"),
        )
    else:
        gw.script("m", Behavior(content=cut, finish_reason="length"))
    with pytest.raises(StructuredOutputTruncated) as info:
        structured(llm(gw, max_tokens=12), CodeReview, method=method).invoke(PROMPT)  # type: ignore[arg-type]
    err = info.value
    assert err.reason == "truncated" and err.max_tokens == 12
    assert "raise max_tokens" in str(err) and "max_tokens=12" in str(err)
    assert err.partial == cut
    assert gw.count("m") == 1


def test_a_per_call_max_tokens_is_the_limit_named(gw: MockGateway) -> None:
    gw.script("m", Behavior(json=GOOD))  # the mock itself cuts the answer at max_tokens
    with pytest.raises(StructuredOutputTruncated) as info:
        structured(llm(gw), CodeReview, method="json_schema").invoke(PROMPT, max_tokens=5)
    assert info.value.max_tokens == 5 and "max_tokens=5" in str(info.value)
    assert gw.count("m") == 1


def test_truncation_moves_on_to_the_fallback(gw: MockGateway) -> None:
    gw.script("m", Behavior(content='{"score": 7', finish_reason="length"))
    gw.script("big", Behavior(json=GOOD))
    review = structured(llm(gw), CodeReview, method="json_schema", fallback=llm(gw, "big"))
    assert review.invoke(PROMPT) == EXPECTED
    assert gw.count("m") == 1 and gw.count("big") == 1


# ---------------------------------------------------------------- fallbacks and errors


def test_fallback_model_after_repairs_are_spent(gw: MockGateway) -> None:
    gw.script("small", Behavior(json=WRONG_TYPES))
    gw.script("big", Behavior(json=GOOD))
    review = structured(
        llm(gw, "small"),
        CodeReview,
        max_repairs=1,
        fallback=[llm(gw, "big", profile={"structured_output": True})],
        include_raw=True,
    )
    out = review.invoke(PROMPT)
    assert out["parsed"] == EXPECTED
    assert [(a.model, a.method, a.ok) for a in out["attempts"]] == [
        ("small", "function_calling", False),
        ("small", "function_calling", False),
        ("big", "json_schema", True),
    ]
    assert out["raw"].response_metadata["structured"]["fallback"] is True
    assert gw.count("small") == 2 and gw.count("big") == 1
    # the fallback starts from the original input, not from the failed conversation
    assert [m["role"] for m in body(gw, "big", 0)["messages"]] == ["user"]


def test_gateway_errors_are_raised_unchanged(gw: MockGateway) -> None:
    gw.script("m", Behavior(status=500))
    gw.script("backup", Behavior(json=GOOD))
    with pytest.raises(UpstreamError) as info:
        structured(llm(gw), CodeReview, fallback=llm(gw, "backup")).invoke(PROMPT)
    assert not isinstance(info.value, StructuredOutputError)
    assert gw.count("backup") == 0


def test_include_raw_returns_failures_instead_of_raising(gw: MockGateway) -> None:
    gw.script("m", Behavior(json=WRONG_TYPES))
    out = structured(llm(gw), CodeReview, max_repairs=1, include_raw=True).invoke(PROMPT)
    assert set(out) == {"raw", "parsed", "parsing_error", "attempts"}
    assert out["parsed"] is None
    assert isinstance(out["parsing_error"], StructuredOutputInvalid)
    assert out["parsing_error"].attempts == out["attempts"]
    assert len(out["attempts"]) == 2
    assert out["raw"] is out["attempts"][-1].raw
    assert out["raw"].response_metadata["structured"]["attempts"] == 2


# ---------------------------------------------------------------- router, other schemas


def test_router_chat_model_uses_json_schema_and_repairs(gw: MockGateway) -> None:
    gw.script("dep-1", [Behavior(json=WRONG_TYPES), Behavior(json=GOOD)])
    out = structured(router(gw), CodeReview, include_raw=True).invoke(PROMPT)
    assert out["parsed"] == EXPECTED
    assert [a.method for a in out["attempts"]] == ["json_schema", "json_schema"]
    assert body(gw, "dep-1", 0)["response_format"]["json_schema"]["strict"] is True
    assert "score: Input should be a valid integer" in last_user_text(body(gw, "dep-1", 1))
    assert out["raw"].response_metadata["routing"]["deployment"] == "dep-1"


def test_router_stream_truncation_is_reported_as_truncation(gw: MockGateway) -> None:
    gw.script("dep-1", Behavior(content='{"score": 7, "issues": ["a"', finish_reason="length"))
    with pytest.raises(StructuredOutputTruncated):
        list(structured(router(gw), CodeReview).stream(PROMPT))
    assert gw.count("dep-1") == 1


def test_typeddict_schema(gw: MockGateway) -> None:
    class Verdict(TypedDict):
        score: int
        recommendation: Literal["approve", "needs_work"]

    gw.script(
        "m",
        [
            Behavior(json={"score": "x", "recommendation": "approve"}),
            Behavior(json={"score": 2, "recommendation": "needs_work"}),
        ],
    )
    assert structured(llm(gw), Verdict).invoke("x") == {"score": 2, "recommendation": "needs_work"}
    assert "score: Input should be a valid integer" in last_user_text(body(gw, "m", 1))


def test_json_schema_dict(gw: MockGateway) -> None:
    schema = {
        "title": "Verdict",
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 0, "maximum": 10},
            "tags": {"type": "array", "items": {"type": "string"}},
            "recommendation": {"enum": ["approve", "needs_work"]},
        },
        "required": ["score", "recommendation"],
    }
    gw.script(
        "m",
        [
            Behavior(json={"score": 11, "tags": ["a", 3], "recommendation": "merge"}),
            Behavior(json={"score": 9, "recommendation": "approve"}),
        ],
    )
    assert structured(llm(gw), schema, method="json_schema").invoke("x") == {
        "score": 9,
        "recommendation": "approve",
    }
    feedback = last_user_text(body(gw, "m", 1))
    assert "- score: must be <= 10 (got 11)" in feedback
    assert "- tags.1: expected string, got integer" in feedback
    assert "- recommendation: must be one of ['approve', 'needs_work'] (got 'merge')" in feedback


def test_bad_arguments_fail_early(gw: MockGateway) -> None:
    with pytest.raises(ValueError, match="max_repairs"):
        structured(llm(gw), CodeReview, max_repairs=-1)
    with pytest.raises(ValueError, match="strict"):
        structured(llm(gw), CodeReview, method="json_mode", strict=True)
    with pytest.raises(ValueError, match="method"):
        structured(llm(gw), CodeReview, method="xml")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schema"):
        structured(llm(gw), 42)


# ---------------------------------------------------------------- async, batch, streaming


async def test_async_repair_and_batch(gw: MockGateway) -> None:
    gw.script("m", [Behavior(json=GOOD, invalid_json=True), Behavior(json=GOOD)])
    review = structured(llm(gw), CodeReview, method="json_schema")
    assert await review.ainvoke(PROMPT) == EXPECTED
    assert "not valid JSON" in last_user_text(body(gw, "m", 1))
    gw.script("m", Behavior(json=GOOD))
    assert await review.abatch([PROMPT, PROMPT, PROMPT]) == [EXPECTED] * 3


async def test_async_errors_are_typed(gw: MockGateway) -> None:
    gw.script("m", Behavior(refusal="no"))
    with pytest.raises(StructuredOutputRefused):
        await structured(llm(gw), CodeReview).ainvoke(PROMPT)
    gw.script("m", Behavior(content='{"score": 1', finish_reason="length"))
    with pytest.raises(StructuredOutputTruncated):
        await structured(llm(gw), CodeReview, method="json_schema").ainvoke(PROMPT)


def test_batch_keeps_failures_per_input(gw: MockGateway) -> None:
    gw.script("m", Behavior(json=GOOD))
    gw.script("r", Behavior(refusal="no"))
    review = structured(llm(gw), CodeReview)
    assert review.batch([PROMPT, PROMPT]) == [EXPECTED, EXPECTED]
    refusing = structured(llm(gw, "r"), CodeReview)
    out = refusing.batch([PROMPT], return_exceptions=True)
    assert isinstance(out[0], StructuredOutputRefused)


@pytest.mark.parametrize("method", METHODS)
def test_stream_yields_growing_partials_then_the_object(gw: MockGateway, method: str) -> None:
    gw.script("m", Behavior(json=GOOD))
    items = list(structured(llm(gw), CodeReview, method=method).stream(PROMPT))  # type: ignore[arg-type]
    *partials, final = items
    assert final == EXPECTED
    assert len(partials) >= 2 and all(isinstance(p, dict) for p in partials)
    sizes = [len(json.dumps(p)) for p in partials]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert partials[0].get("score") == 7
    assert partials[-1] == GOOD


def test_stream_repairs_and_restarts_the_partials(gw: MockGateway) -> None:
    gw.script("m", [Behavior(json=WRONG_TYPES), Behavior(json=GOOD)])
    items = list(structured(llm(gw), CodeReview, method="json_schema").stream(PROMPT))
    assert items[-1] == EXPECTED
    assert {"score": "high", "issues": "none", "recommendation": "approve"} in items
    assert gw.count("m") == 2
    assert "score: Input should be a valid integer" in last_user_text(body(gw, "m", 1))


@pytest.mark.parametrize("method", METHODS)
def test_stream_truncation(gw: MockGateway, method: str) -> None:
    cut = '{"score": 7, "issues": ["a"'
    if method == "function_calling":
        calls = [{"name": "CodeReview", "arguments": cut}]
        gw.script("m", Behavior(tool_calls=calls, finish_reason="length"))
    else:
        gw.script("m", Behavior(content=cut, finish_reason="length"))
    review = structured(llm(gw), CodeReview, method=method)  # type: ignore[arg-type]
    with pytest.raises(StructuredOutputTruncated) as info:
        list(review.stream(PROMPT))
    assert info.value.partial == cut
    assert gw.count("m") == 1


@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
def test_stream_refusal(gw: MockGateway, method: str) -> None:
    gw.script("m", Behavior(refusal="no thanks"))
    with pytest.raises(StructuredOutputRefused, match="no thanks"):
        list(structured(llm(gw), CodeReview, method=method).stream(PROMPT))  # type: ignore[arg-type]
    assert gw.count("m") == 1


async def test_astream_with_include_raw_ends_with_the_result_dict(gw: MockGateway) -> None:
    gw.script("m", [Behavior(json=GOOD, invalid_json=True), Behavior(json=GOOD)])
    review = structured(llm(gw), CodeReview, method="function_calling", include_raw=True)
    items = [item async for item in review.astream(PROMPT)]
    final = items[-1]
    assert final["parsed"] == EXPECTED
    assert [a.reason for a in final["attempts"]] == ["invalid_json", None]
    assert all("attempts" not in item for item in items[:-1])


# ---------------------------------------------------------------- tracing


class Runs(BaseCallbackHandler):
    def __init__(self) -> None:
        self.chains: dict[UUID, tuple[str, UUID | None, dict[str, Any]]] = {}
        self.errors: set[UUID] = set()
        self.models: dict[UUID, UUID | None] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, **kw: Any) -> None:
        self.chains[kw["run_id"]] = (
            str(kw.get("name")),
            kw.get("parent_run_id"),
            kw.get("metadata") or {},
        )

    def on_chain_error(self, error: BaseException, **kw: Any) -> None:
        self.errors.add(kw["run_id"])

    def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        self.models[kw["run_id"]] = kw.get("parent_run_id")


@pytest.mark.parametrize("api", ["invoke", "stream"])
def test_each_attempt_is_a_child_run(gw: MockGateway, api: str) -> None:
    gw.script("m", [Behavior(json=WRONG_TYPES), Behavior(json=GOOD)])
    runs = Runs()
    review = structured(llm(gw), CodeReview)
    config: Any = {"callbacks": [runs], "run_name": "review"}
    if api == "invoke":
        review.invoke(PROMPT, config=config)
    else:
        list(review.stream(PROMPT, config=config))
    top = [rid for rid, (name, parent, _) in runs.chains.items() if name == "review"]
    assert len(top) == 1 and runs.chains[top[0]][1] is None
    attempts = [rid for rid, (name, _, _) in runs.chains.items() if name == "structured_attempt"]
    assert len(attempts) == 2
    assert all(runs.chains[a][1] == top[0] for a in attempts)
    meta = [runs.chains[a][2] for a in attempts]
    assert [m["structured_attempt"] for m in meta] == [1, 2]
    assert {m["structured_method"] for m in meta} == {"function_calling"}
    assert attempts[0] in runs.errors and attempts[1] not in runs.errors  # the verdict
    assert sorted(map(str, runs.models.values())) == sorted(map(str, attempts))


def test_with_structured_output_opts_into_repairs(gw: MockGateway) -> None:
    from gatewaykit import GatewayChatModel, RouterChatModel

    bad = Behavior(json={"score": "high", "issues": [], "recommendation": "approve"})
    good = Behavior(json={"score": 4, "issues": [], "recommendation": "approve"})
    gw.script("wso-a", [bad, good])
    llm = GatewayChatModel(base_url=gw.base_url, api_key="k", model="wso-a", max_retries=0)
    review = llm.with_structured_output(CodeReview, max_repairs=1).invoke("review this")
    assert isinstance(review, CodeReview) and review.score == 4
    assert gw.count("wso-a") == 2
    gw.script("wso-b", [bad, good])
    cfg = {
        "model_list": [
            {
                "model_name": "g",
                "litellm_params": {
                    "model": "openai/wso-b",
                    "api_base": gw.base_url,
                    "api_key": "k",
                },
            }
        ]
    }
    router = RouterChatModel.from_config(cfg, model="g")
    assert router.with_structured_output(CodeReview, max_repairs=1).invoke("r").score == 4
    with pytest.raises(ValueError, match="cannot be combined"):
        llm.with_structured_output(CodeReview, max_repairs=1, tools=[])

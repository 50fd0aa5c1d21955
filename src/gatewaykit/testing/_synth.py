"""Deterministic answers synthesised from the request.

The rules are the ones LangChain's standard integration suite needs from a fake upstream
(langchain-tests ``ChatModelIntegrationTests``): echo the prompt, call the named or first tool with
arguments filled from its JSON schema (integers from the first number in the prompt, strings from
the first 'single-quoted' text, otherwise "pirate"), answer a tool result with text that quotes
it, and fill ``response_format`` JSON schemas the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gatewaykit.testing import _json
from gatewaykit.testing.behavior import Behavior

__all__ = [
    "Answer",
    "PromptFacts",
    "SchemaFiller",
    "completion_tokens",
    "estimate_tokens",
    "last_user_text",
    "prompt_tokens",
    "split_text",
    "synthesize",
    "text_of",
]

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# An apostrophe inside a word ("What's") is not an opening quote.
_SINGLE_QUOTED = re.compile(r"(?<![A-Za-z0-9])'([^'\n]+)'")
_QUOTED_WORD = re.compile(r"""(?<![A-Za-z0-9])(['"])([^'"\n]{1,80}?)\1""")
_WORDS = re.compile(r"\s*\S+\s*")
_ECHO_LIMIT = 200
_MAX_DEPTH = 12
_STRING_DEFAULT = "pirate"
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "pirate@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def text_of(content: Any) -> str:
    """The text of an OpenAI message ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return ""


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def estimate_tokens(text: str) -> int:
    """About four characters per token, at least one."""
    return max(1, (len(text) + 3) // 4)


def prompt_tokens(messages: list[Any]) -> int:
    total = 0
    for message in messages:
        if isinstance(message, Mapping):
            total += 3 + (len(text_of(message.get("content"))) + 3) // 4
    return max(1, total)


def split_text(text: str) -> list[str]:
    """Stream pieces: one per word (with its spaces); long unbroken text in 16-char slices."""
    pieces = _WORDS.findall(text)
    if len(pieces) <= 1 and len(text) > 24:
        return [text[i : i + 16] for i in range(0, len(text), 16)]
    if not pieces:
        return [text] if text else []
    if "".join(pieces) != text:  # leading/trailing whitespace-only text; keep it exact
        return [text]
    return pieces


@dataclass(frozen=True, slots=True)
class PromptFacts:
    """What the fillers take from the prompt."""

    text: str
    number: str | None
    quoted: str | None

    @classmethod
    def of(cls, text: str) -> PromptFacts:
        number = _NUMBER.search(text)
        quoted = _SINGLE_QUOTED.search(text)
        return cls(
            text=text,
            number=number.group(0) if number else None,
            quoted=quoted.group(1) if quoted else None,
        )

    def quoted_words(self) -> list[str]:
        seen: dict[str, None] = {}
        for match in _QUOTED_WORD.finditer(self.text):
            seen.setdefault(match.group(2), None)
        return list(seen)


class SchemaFiller:
    """Builds a value that validates against a JSON schema (``$ref``/``$defs``, ``anyOf``, enums,
    nested objects, arrays), using prompt facts for leaf values."""

    def __init__(self, root: Any, facts: PromptFacts) -> None:
        self._root = root if isinstance(root, Mapping) else {}
        self._facts = facts

    def fill(self) -> Any:
        return self._fill(self._root, 0)

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        node: Any = self._root
        for raw in ref[1:].split("/"):
            if not raw:
                continue
            key = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            else:
                return {}
        return node

    def _fill(self, node: Any, depth: int) -> Any:
        if not isinstance(node, Mapping):
            return _STRING_DEFAULT
        if depth > _MAX_DEPTH:
            return self._minimal(node)
        if "$ref" in node:
            return self._fill(self._resolve(str(node["$ref"])), depth + 1)
        if "const" in node:
            return node["const"]
        enum = node.get("enum")
        if isinstance(enum, list) and enum:
            return enum[0]
        for key in ("anyOf", "oneOf"):
            options = node.get(key)
            if isinstance(options, list) and options:
                chosen = next((o for o in options if not _is_null_schema(o)), None)
                return None if chosen is None else self._fill(chosen, depth + 1)
        all_of = node.get("allOf")
        if isinstance(all_of, list) and all_of:
            return self._fill(self._merge_all_of(node, all_of), depth + 1)
        kind = _schema_type(node)
        if kind == "object":
            return self._object(node, depth)
        if kind == "array":
            return self._array(node, depth)
        if kind == "integer":
            return self._integer(node)
        if kind == "number":
            return self._number(node)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(node)

    def _merge_all_of(self, node: Mapping[str, Any], parts: list[Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
        properties: dict[str, Any] = dict(merged.get("properties") or {})
        required: list[str] = list(merged.get("required") or [])
        for part in parts:
            while isinstance(part, Mapping) and "$ref" in part:
                part = self._resolve(str(part["$ref"]))
            if not isinstance(part, Mapping):
                continue
            for key, value in part.items():
                if key == "properties" and isinstance(value, Mapping):
                    properties.update(value)
                elif key == "required" and isinstance(value, list):
                    required.extend(v for v in value if v not in required)
                else:
                    merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
            merged.setdefault("type", "object")
        if required:
            merged["required"] = required
        return merged

    def _object(self, node: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = node.get("properties")
        out: dict[str, Any] = {}
        if isinstance(properties, Mapping):
            for name, sub in properties.items():
                out[str(name)] = self._fill(sub, depth + 1)
        for name in node.get("required") or ():
            if isinstance(name, str) and name not in out:
                out[name] = _STRING_DEFAULT
        return out

    def _array(self, node: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = node.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            return [self._fill(item, depth + 1) for item in prefix]
        max_items = node.get("maxItems")
        if isinstance(max_items, int) and max_items <= 0:
            return []
        min_items = node.get("minItems")
        count = min(max(1, min_items if isinstance(min_items, int) else 1), 8)
        items = node.get("items", {})
        return [self._fill(items, depth + 1) for _ in range(count)]

    def _integer(self, node: Mapping[str, Any]) -> int:
        value = int(float(self._facts.number)) if self._facts.number else 1
        return int(_clamp(value, node, step=1))

    def _number(self, node: Mapping[str, Any]) -> float:
        value = float(self._facts.number) if self._facts.number else 1.0
        return float(_clamp(value, node, step=1e-6))

    def _string(self, node: Mapping[str, Any]) -> str:
        fmt = node.get("format")
        value = _FORMATS.get(fmt, "") if isinstance(fmt, str) else ""
        if not value:
            value = self._facts.quoted or _STRING_DEFAULT
        min_len = node.get("minLength")
        if isinstance(min_len, int) and len(value) < min_len:
            value = value + "x" * (min_len - len(value))
        max_len = node.get("maxLength")
        if isinstance(max_len, int) and len(value) > max_len:
            value = value[:max_len]
        return value

    def _minimal(self, node: Mapping[str, Any]) -> Any:
        kind = _schema_type(node)
        return {"object": {}, "array": [], "integer": 0, "number": 0.0, "boolean": False}.get(
            kind, None if kind == "null" else ""
        )


def _is_null_schema(node: Any) -> bool:
    return isinstance(node, Mapping) and node.get("type") == "null"


def _schema_type(node: Mapping[str, Any]) -> str:
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in node or "additionalProperties" in node:
        return "object"
    if "items" in node or "prefixItems" in node:
        return "array"
    return "string"


def _clamp(value: float, node: Mapping[str, Any], *, step: float) -> float:
    low = node.get("minimum")
    if isinstance(low, int | float) and value < low:
        value = low
    ex_low = node.get("exclusiveMinimum")
    if isinstance(ex_low, int | float) and value <= ex_low:
        value = ex_low + step
    high = node.get("maximum")
    if isinstance(high, int | float) and value > high:
        value = high
    ex_high = node.get("exclusiveMaximum")
    if isinstance(ex_high, int | float) and value >= ex_high:
        value = ex_high - step
    return value


@dataclass(slots=True)
class Answer:
    """The synthesised assistant turn before it is rendered as JSON or SSE."""

    content: str | None
    tool_calls: list[dict[str, Any]]
    refusal: str | None
    finish_reason: str


def _tool_name(tool: Any) -> str | None:
    if not isinstance(tool, Mapping):
        return None
    fn = tool.get("function")
    if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
        return str(fn["name"])
    name = tool.get("name")
    return name if isinstance(name, str) else None


def _tool_parameters(tool: Mapping[str, Any]) -> Any:
    fn = tool.get("function")
    if isinstance(fn, Mapping):
        return fn.get("parameters") or {}
    return tool.get("parameters") or {}


def chosen_tool(body: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The tool an automatic tool call uses, or None when the turn should be text."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "user":
        return None
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    wanted: str | None = None
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            wanted = fn["name"]
        elif isinstance(choice.get("name"), str):
            wanted = choice["name"]
    for tool in tools:
        name = _tool_name(tool)
        if name is not None and (wanted is None or name == wanted):
            return name, _tool_parameters(tool)
    if wanted is not None:
        return wanted, {}
    return None


def normalise_tool_calls(calls: list[dict[str, Any]], next_id: Any) -> list[dict[str, Any]]:
    """Explicit ``Behavior.tool_calls`` in OpenAI's wire form (``arguments`` as a JSON string)."""
    out: list[dict[str, Any]] = []
    for call in calls:
        fn = call.get("function")
        if isinstance(fn, Mapping):
            name = fn.get("name", "")
            arguments = fn.get("arguments", "{}")
        else:
            name = call.get("name", "")
            arguments = call.get("arguments", call.get("args", {}))
        if not isinstance(arguments, str):
            arguments = _json.dumps(arguments).decode()
        out.append(
            {
                "id": call.get("id") or next_id(),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
    return out


def break_json(text: str) -> str:
    """Malformed JSON that still looks like JSON: the closing brace replaced by a dangling comma."""
    return (text[:-1] if len(text) > 1 else text) + ","


def _default_text(messages: list[Any]) -> str:
    last = messages[-1] if messages else None
    if isinstance(last, Mapping) and last.get("role") == "tool":
        return f"The tool returned: {text_of(last.get('content'))}"
    text = last_user_text(messages).strip()
    return "Echo: " + (text[:_ECHO_LIMIT] if text else "hello")


def _apply_stop(content: str, stop: Any) -> str:
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    cut = len(content)
    for s in stops:
        if isinstance(s, str) and s:
            i = content.find(s)
            if 0 <= i < cut:
                cut = i
    return content[:cut]


def synthesize(body: Mapping[str, Any], behavior: Behavior, next_id: Callable[[], str]) -> Answer:
    """The assistant turn for ``body`` under ``behavior`` (see the module docstring)."""
    b = behavior
    raw_messages = body.get("messages")
    messages: list[Any] = raw_messages if isinstance(raw_messages, list) else []
    if b.refusal is not None:
        return Answer(None, [], b.refusal, b.finish_reason or "stop")
    if b.tool_calls is not None:
        calls = normalise_tool_calls(b.tool_calls, next_id)
        return Answer(
            b.content, calls, None, b.finish_reason or ("tool_calls" if calls else "stop")
        )

    tool = chosen_tool(body) if b.content is None else None
    if tool is not None:
        name, parameters = tool
        if b.json is not None:
            arguments = _json.dumps(b.json).decode()
        else:
            facts = PromptFacts.of(last_user_text(messages))
            value = SchemaFiller(parameters, facts).fill()
            # tool arguments are always an object, even for a schema-less tool
            arguments = _json.dumps(value if isinstance(value, dict) else {}).decode()
        if b.invalid_json:
            arguments = break_json(arguments)
        call = {
            "id": next_id(),
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return Answer(None, [call], None, b.finish_reason or "tool_calls")

    wants_json = False
    if b.content is not None:
        content = b.content
    elif b.json is not None:
        content = _json.dumps(b.json).decode()
        wants_json = True
    else:
        fmt = body.get("response_format")
        fmt_type = fmt.get("type") if isinstance(fmt, Mapping) else None
        if fmt_type == "json_schema" and isinstance(fmt, Mapping):
            spec = fmt.get("json_schema")
            schema = spec.get("schema", {}) if isinstance(spec, Mapping) else {}
            facts = PromptFacts.of(last_user_text(messages))
            content = _json.dumps(SchemaFiller(schema, facts).fill()).decode()
            wants_json = True
        elif fmt_type == "json_object":
            facts = PromptFacts.of(last_user_text(messages))
            keys = facts.quoted_words()
            obj: dict[str, Any] = (
                dict.fromkeys(keys, _STRING_DEFAULT)
                if keys
                else {"result": _default_text(messages)}
            )
            content = _json.dumps(obj).decode()
            wants_json = True
        else:
            content = _default_text(messages)
    if b.invalid_json and wants_json:
        content = break_json(content)

    finish = "stop"
    if body.get("stop"):
        content = _apply_stop(content, body["stop"])
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and estimate_tokens(content) > limit:
        content = content[: limit * 4]
        finish = "length"
    return Answer(content, [], None, b.finish_reason or finish)


def completion_tokens(answer: Answer) -> int:
    total = 0
    if answer.content:
        total += estimate_tokens(answer.content)
    if answer.refusal:
        total += estimate_tokens(answer.refusal)
    for call in answer.tool_calls:
        total += estimate_tokens(call["function"]["name"] + call["function"]["arguments"])
    return max(1, total)

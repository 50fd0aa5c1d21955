"""Fast JSON for the mock's hot path: orjson when it is installed, the stdlib otherwise."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "loads"]

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson ships with the dev environment
    _orjson = None  # type: ignore[assignment]


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, non-ASCII kept unescaped (like OpenAI's own responses)."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()  # pragma: no cover


def loads(data: bytes | str) -> Any:
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)  # pragma: no cover

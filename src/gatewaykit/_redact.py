"""Keep secrets out of messages, reprs and logs.

Gateways echo keys back in error text (LiteLLM's auth error quotes the key it received), so every
string that leaves gatewaykit in an exception or a log line goes through :func:`redact` first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SECRET_FIELD", "redact", "redact_mapping"]

# sk-..., sk-proj-..., lsv2_..., pk-lf-/sk-lf-, bearer tokens, AWS-style secrets after a key word.
_TOKEN = re.compile(r"(?P<prefix>\b(?:sk|pk|rk|lsv2)[-_])(?P<secret>[A-Za-z0-9_\-]{6,})")
_BEARER = re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._\-~+/]{6,}=*)")
_ASSIGNED = re.compile(
    r"(?i)((?:api[_-]?key|secret|password|token|authorization)\s*[=:]\s*['\"]?)([^\s'\",}]{6,})"
)

SECRET_FIELD = re.compile(
    r"(?i)(api[_-]?key|_key$|^key$|secret|password|passwd|^token$|access[_-]?token|auth[_-]?token"
    r"|authorization|credential)"
)
"""Field names whose values are never shown."""


def _mask(secret: str) -> str:
    return "****" + secret[-4:] if len(secret) > 12 else "****"


def redact(text: str) -> str:
    """Mask API keys, bearer tokens and ``key=value`` secrets in ``text``.

    Example::

        >>> redact("Received API Key = sk-1234567890abcdef")
        'Received API Key = sk-****cdef'
    """
    if not text:
        return text
    text = _TOKEN.sub(lambda m: m.group("prefix") + _mask(m.group("secret")), text)
    text = _BEARER.sub(lambda m: m.group(1) + _mask(m.group(2)), text)
    return _ASSIGNED.sub(lambda m: m.group(1) + _mask(m.group(2)), text)


def redact_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with secret-named fields masked (recursively) and strings redacted."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if SECRET_FIELD.search(str(k)) and v is not None and not isinstance(v, bool | int | float):
            out[k] = "****"
        elif isinstance(v, Mapping):
            out[k] = redact_mapping(v)
        elif isinstance(v, str):
            out[k] = redact(v)
        else:
            out[k] = v
    return out

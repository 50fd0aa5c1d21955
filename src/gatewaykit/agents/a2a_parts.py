"""LangChain content blocks <-> A2A parts, so images and files cross A2A instead of vanishing.

A2A carries text, raw bytes or a URL per part (with a media type). LangChain messages carry
content blocks in two spellings: OpenAI's (``image_url``, ``file``, ``input_audio``) and
LangChain's standard ones (``image``, ``file``, ``audio`` with ``url`` or ``base64`` and
``mime_type``). Blocks that cannot be carried (a provider-side ``file_id``, tool blocks) raise a
``ValueError`` naming the block, never a silent drop.

Example::

    parts = blocks_to_parts(HumanMessage(content=[
        {"type": "text", "text": "What is on this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0..."}},
    ]).content)
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from collections.abc import Sequence
from typing import Any

__all__ = ["blocks_to_parts", "parts_to_blocks"]

_TEXT_TYPES = frozenset({"text"})
_MEDIA_TYPES = frozenset({"image", "file", "audio", "video"})


def blocks_to_parts(content: str | Sequence[Any]) -> list[Any]:
    """The non-text content blocks of a message as A2A ``Part``s (text is rendered elsewhere)."""
    from a2a.types import Part

    if isinstance(content, str):
        return []
    parts: list[Any] = []
    for i, block in enumerate(content):
        if isinstance(block, str) or not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in _TEXT_TYPES:
            continue
        url, data, mime = _source(block, i)
        if not mime:
            # Say what the block was even when the bytes do not: image_url -> image/*.
            guessed = mimetypes.guess_type(url)[0] if url else None
            family = "image" if kind == "image_url" else kind
            mime = guessed or (f"{family}/*" if family in _MEDIA_TYPES - {"file"} else None)
        if data is not None:
            parts.append(Part(raw=data, media_type=mime or "application/octet-stream"))
        else:
            parts.append(Part(url=url, media_type=mime or ""))
    return parts


def parts_to_blocks(parts: Sequence[Any]) -> list[dict[str, Any]]:
    """LangChain standard content blocks for the file parts of an A2A message (text excluded)."""
    blocks: list[dict[str, Any]] = []
    for part in parts:
        which = part.WhichOneof("content")
        if which not in ("raw", "url"):
            continue
        mime = part.media_type or ""
        kind = mime.split("/", 1)[0] if mime.split("/", 1)[0] in _MEDIA_TYPES else "file"
        block: dict[str, Any] = {"type": kind}
        if which == "raw":
            block["base64"] = base64.b64encode(part.raw).decode()
        else:
            block["url"] = part.url
        if mime and not mime.endswith("/*"):
            block["mime_type"] = mime
        if part.filename:
            block["filename"] = part.filename
        blocks.append(block)
    return blocks


def _source(block: dict[str, Any], index: int) -> tuple[str | None, bytes | None, str | None]:
    """(url, raw bytes, media type) of one non-text block."""
    kind = block.get("type")
    if kind == "image_url":
        ref = block.get("image_url")
        url = ref.get("url") if isinstance(ref, dict) else ref
        if isinstance(url, str) and url:
            return _from_url(url, index)
    elif kind == "input_audio":
        audio = block.get("input_audio") or {}
        if isinstance(audio, dict) and audio.get("data"):
            fmt = audio.get("format") or "wav"
            return None, _b64(audio["data"], index), f"audio/{fmt}"
    elif kind == "file" and isinstance(block.get("file"), dict):
        file = block["file"]
        if file.get("file_data"):
            return _from_url(str(file["file_data"]), index)
    elif kind in _MEDIA_TYPES:
        mime = block.get("mime_type")
        if block.get("base64") or block.get("data"):
            return None, _b64(block.get("base64") or block["data"], index), mime
        if block.get("url"):
            url, data, from_url = _from_url(str(block["url"]), index)
            return url, data, mime or from_url
    raise ValueError(
        f"content block {index} of type {kind!r} cannot be sent to an A2A agent: send text, or "
        "an image, audio or file as a URL or base64 data (a provider-side file_id has no "
        "meaning to another agent)"
    )


def _from_url(url: str, index: int) -> tuple[str | None, bytes | None, str | None]:
    if not url.startswith("data:"):
        return url, None, None
    head, sep, payload = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        raise ValueError(f"content block {index}: a data URL must be base64 encoded")
    return None, _b64(payload, index), head[: -len(";base64")] or None


def _b64(data: Any, index: int) -> bytes:
    try:
        return base64.b64decode(str(data), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"content block {index}: invalid base64 data ({exc})") from None

"""Post-call guardrails on a stream: mask PII split across chunks without stopping the stream.

A card number may arrive as ``"4242"``, ``" 4242"``, ``" 4242 4242"``. :class:`TextStream`
keeps a small tail of the text back, only as much as a match could still grow from (each
detector's :meth:`~gatewaykit.guardrails.TextGuardrail.hold_from`, bounded by its ``window``),
and emits the rest masked, so tokens keep flowing and no unmasked number is ever emitted.

Tool-call argument chunks are held until the stream ends and released as one masked chunk
(partial JSON cannot be masked safely); a message-level custom guardrail (one that only
implements ``post_call``) makes the whole answer wait for the end, then runs once.

Example::

    ts = TextStream(PIIGuardrail())
    out = ts.feed("card 4242 ") + ts.feed("4242 4242 4242 thanks") + ts.finish()
    assert out == "card [CARD] thanks"
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.messages.utils import message_chunk_to_message
from langchain_core.outputs import ChatGenerationChunk

from gatewaykit.guardrails.base import Guardrail, TextGuardrail, apply_findings

__all__ = ["StreamGuardrails", "TextStream"]


class TextStream:
    """One text guardrail's state over a stream: the held-back tail."""

    __slots__ = ("buffer", "guardrail")

    def __init__(self, guardrail: TextGuardrail) -> None:
        self.guardrail = guardrail
        self.buffer = ""

    def feed(self, text: str) -> str:
        """Take ``text``; return what can be emitted now, masked."""
        if not text:
            return ""
        self.buffer += text
        buf = self.buffer
        findings = self.guardrail.scan(buf, "post_call")
        for f in findings:
            if f.action == "block":
                self.guardrail.block(f.rule, "post_call")
        cut = self.guardrail.hold_from(buf)
        for f in sorted(findings, key=lambda f: f.start, reverse=True):
            if f.start < cut < f.end:
                cut = f.start
        if cut <= 0:
            return ""
        self.buffer = buf[cut:]
        return apply_findings(buf[:cut], [f for f in findings if f.end <= cut])

    def finish(self) -> str:
        """The held tail, masked (the stream is over: nothing can grow any more)."""
        rest, self.buffer = self.buffer, ""
        return self.guardrail.apply_text(rest, "post_call")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b if isinstance(b, str) else str(b.get("text", ""))
            for b in content
            if isinstance(b, str) or (isinstance(b, dict) and b.get("type") == "text")
        )
    return ""


class StreamGuardrails:
    """Runs post-call guardrails over a stream of ``ChatGenerationChunk``.

    Example::

        sg = StreamGuardrails([PIIGuardrail()])
        for chunk in sg.run(model._stream(messages)):
            ...
    """

    def __init__(self, guardrails: Sequence[Guardrail]) -> None:
        self.text = [TextStream(g) for g in guardrails if isinstance(g, TextGuardrail)]
        self.whole = [g for g in guardrails if not isinstance(g, TextGuardrail)]
        self.guardrails = list(guardrails)
        self.tool_chunks: list[dict[str, Any]] = []
        self.held: list[ChatGenerationChunk] = []
        self.last: ChatGenerationChunk | None = None

    def _mask(self, text: str) -> str:
        for ts in self.text:
            text = ts.feed(text)
        return text

    def _flush(self) -> str:
        out = ""
        for ts in self.text:
            out = ts.feed(out) if out else out
            out += ts.finish()
        return out

    def push(self, chunk: ChatGenerationChunk) -> list[ChatGenerationChunk]:
        """Chunks to emit for one incoming chunk (maybe none)."""
        if self.whole:
            self.held.append(chunk)
            return []
        msg = chunk.message
        tcc = list(getattr(msg, "tool_call_chunks", None) or [])
        if tcc:
            self.tool_chunks.extend(dict(t) for t in tcc)
        text = self._mask(_text_of(msg.content))
        update: dict[str, Any] = {"content": text}
        if tcc:
            update["tool_call_chunks"] = []
            update["tool_calls"] = []
            update["invalid_tool_calls"] = []
            update["additional_kwargs"] = {
                k: v for k, v in msg.additional_kwargs.items() if k != "tool_calls"
            }
        self.last = chunk
        return [_rebuild(chunk, msg.model_copy(update=update))]  # type: ignore[arg-type]

    def finish(self) -> list[ChatGenerationChunk]:
        """The held tail (and held tool calls) at the end of the stream."""
        if self.whole:
            return self._finish_whole()
        tail = self._flush()
        calls = self._masked_tool_chunks()
        if not tail and not calls:
            return []
        msg = AIMessageChunk(content=tail, tool_call_chunks=calls)
        return [ChatGenerationChunk(message=msg)]

    def _masked_tool_chunks(self) -> list[Any]:
        merged: dict[Any, dict[str, Any]] = {}
        for t in self.tool_chunks:
            key = t.get("index") if t.get("index") is not None else t.get("id")
            cur = merged.setdefault(key, {"name": None, "args": "", "id": None, "index": key})
            for field in ("name", "id"):
                if t.get(field):
                    cur[field] = t[field]
            cur["args"] += t.get("args") or ""
        out = []
        for cur in merged.values():
            args = cur["args"]
            for ts in self.text:
                args = ts.guardrail.apply_text(args, "post_call")
            out.append(
                tool_call_chunk(name=cur["name"], args=args, id=cur["id"], index=cur["index"])
            )
        return out

    def _held_message(self) -> tuple[ChatGenerationChunk, AIMessage]:
        """The held chunks joined, and the same answer as one whole AIMessage."""
        total = self.held[0]
        for c in self.held[1:]:
            total = total + c
        return total, cast(AIMessage, message_chunk_to_message(total.message))

    def _finish_whole(self) -> list[ChatGenerationChunk]:
        if not self.held:
            return []
        total, message = self._held_message()
        for ts in self.text:
            message = ts.guardrail.post_call(message)
        for g in self.whole:
            message = g.post_call(message)
        return [_from_message(message, total)]

    async def _afinish_whole(self) -> list[ChatGenerationChunk]:
        if not self.held:
            return []
        total, message = self._held_message()
        for ts in self.text:
            message = await ts.guardrail.apost_call(message)
        for g in self.whole:
            message = await g.apost_call(message)
        return [_from_message(message, total)]

    def run(self, chunks: Iterator[ChatGenerationChunk]) -> Iterator[ChatGenerationChunk]:
        """Guard a sync stream."""
        for chunk in chunks:
            yield from self.push(chunk)
        yield from self.finish()

    async def arun(
        self, chunks: AsyncIterator[ChatGenerationChunk]
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Guard an async stream (message-level hooks run their async twin)."""
        async for chunk in chunks:
            for out in self.push(chunk):
                yield out
        tail = await self._afinish_whole() if self.whole else self.finish()
        for out in tail:
            yield out


def _rebuild(chunk: ChatGenerationChunk, message: AIMessageChunk) -> ChatGenerationChunk:
    return ChatGenerationChunk(message=message, generation_info=chunk.generation_info)


def _from_message(message: AIMessage, total: ChatGenerationChunk) -> ChatGenerationChunk:
    calls = [
        tool_call_chunk(
            name=tc["name"],
            args=json.dumps(tc["args"], ensure_ascii=False),
            id=tc.get("id"),
            index=i,
        )
        for i, tc in enumerate(message.tool_calls)
    ]
    chunk = AIMessageChunk(
        content=message.content,
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        usage_metadata=message.usage_metadata,
        id=message.id,
        tool_call_chunks=calls,
    )
    return ChatGenerationChunk(message=chunk, generation_info=total.generation_info)

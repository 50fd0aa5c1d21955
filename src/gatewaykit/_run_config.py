"""Chat models that read call options from the run's config.

A chat model's internals (``_generate``, ``_stream``) never see the ``config`` a call was made
with, yet some options live there: a LangGraph thread id, a task, gateway options in
``configurable``, run tags to forward. :class:`RunConfigChatModel` moves them into the call's
keyword arguments at each of the four entry points, once, for every model that needs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import RunnableConfig

__all__ = ["RunConfigChatModel"]


class RunConfigChatModel(BaseChatModel):
    """A chat model whose entry points pass ``_call_options(config, kwargs)`` down.

    Example::

        class ThreadAware(RunConfigChatModel):
            def _call_options(self, config, kwargs):
                thread = ((config or {}).get("configurable") or {}).get("thread_id")
                return {**kwargs, "thread_id": thread}
    """

    def _call_options(self, config: RunnableConfig | None, kwargs: dict[str, Any]) -> Any:
        """The call's keyword arguments with what the run's config adds (``kwargs`` as is)."""
        return kwargs

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        return super().invoke(input, config, stop=stop, **self._call_options(config, kwargs))

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        options = self._call_options(config, kwargs)
        return await super().ainvoke(input, config, stop=stop, **options)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        return super().stream(input, config, stop=stop, **self._call_options(config, kwargs))

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        return super().astream(input, config, stop=stop, **self._call_options(config, kwargs))

"""Custom guardrails: a plain function, or a class loaded from a file named in the config.

Example (a function)::

    def no_project_names(text: str) -> str:
        if "Project Bluebird" in text:
            raise Block("codename")
        return text.replace("ACME", "[CLIENT]")

    llm = with_guardrails(ChatOpenAI(), [no_project_names])

Example (config, the path relative to the config file)::

    guardrails:
      - guardrail_name: my-content-filter
        litellm_params:
          guardrail: custom
          guardrail_path: ./custom_guardrail.py
          guardrail_class: MyContentGuardrail
          mode: pre_and_post_call
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from gatewaykit.config_errors import ConfigError, ConfigProblem
from gatewaykit.guardrails.base import (
    Block,
    Guardrail,
    Stage,
    blocked,
    is_async_callable,
    map_ai_message,
    map_message,
)

__all__ = ["FunctionGuardrail", "load_guardrail_class"]

TextHook = Callable[[str], "str | None"] | Callable[[str], Awaitable["str | None"]]


class FunctionGuardrail(Guardrail):
    """A function ``text -> text`` (sync or async) as a guardrail on every text of a call.

    Return the text (masked as you like) or None to keep it; raise :class:`Block` to refuse.
    It sees whole texts, so on a stream the answer is released once complete.

    Example::

        FunctionGuardrail(lambda t: t.replace("ACME", "[CLIENT]"), name="client-names")
    """

    def __init__(
        self,
        fn: TextHook,
        *,
        name: str | None = None,
        stages: Collection[Stage] | None = None,
        default_on: bool | None = None,
    ) -> None:
        super().__init__(
            name=name or getattr(fn, "__name__", "custom").replace("_", "-"),
            stages=stages,
            default_on=default_on,
        )
        self.fn = fn
        self.is_async = is_async_callable(fn)

    def _sync(self, text: str, stage: Stage) -> str:
        try:
            if self.is_async:
                from gatewaykit.guardrails.base import _run_sync

                out = _run_sync(self.fn(text))  # type: ignore[arg-type]
            else:
                out = self.fn(text)
        except Block as b:
            raise blocked(self.name, b.rule, stage, b.reason) from None
        return text if out is None else str(out)

    def pre_call(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        return [map_message(m, lambda t: self._sync(t, "pre_call")) for m in messages]

    def post_call(self, message: AIMessage) -> AIMessage:
        return map_ai_message(message, lambda t: self._sync(t, "post_call"))

    async def _async_map(self, texts: list[str], stage: Stage) -> dict[str, str]:
        out: dict[str, str] = {}
        for t in texts:
            try:
                r = self.fn(t)
                if inspect.isawaitable(r):
                    r = await r
            except Block as b:
                raise blocked(self.name, b.rule, stage, b.reason) from None
            out[t] = t if r is None else str(r)
        return out

    async def apre_call(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        if not self.is_async:
            return self.pre_call(messages)
        texts: list[str] = []
        for m in messages:
            map_message(m, lambda t: texts.append(t) or t)  # type: ignore[func-returns-value]
        done = await self._async_map(texts, "pre_call")
        return [map_message(m, lambda t: done.get(t, t)) for m in messages]

    async def apost_call(self, message: AIMessage) -> AIMessage:
        if not self.is_async:
            return self.post_call(message)
        texts: list[str] = []
        map_ai_message(message, lambda t: texts.append(t) or t)  # type: ignore[func-returns-value]
        done = await self._async_map(texts, "post_call")
        return map_ai_message(message, lambda t: done.get(t, t))


def load_guardrail_class(
    path: str,
    class_name: str,
    *,
    base_dir: Path | None,
    field: str,
    source: str | None = None,
) -> type[Guardrail]:
    """Import ``class_name`` from the Python file ``path`` (relative to ``base_dir``)."""
    file = Path(path)
    if not file.is_absolute() and base_dir is not None:
        file = base_dir / file
    if not file.is_file():
        raise ConfigError(
            ConfigProblem(
                f"{field}.guardrail_path",
                f"guardrail file {str(file)!r} not found (paths are relative to the config file)",
            ),
            source=source,
        )
    mod_name = f"_gatewaykit_guardrail_{abs(hash(str(file.resolve())))}"
    module = sys.modules.get(mod_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(mod_name, file)
        if spec is None or spec.loader is None:
            raise ConfigError(
                ConfigProblem(f"{field}.guardrail_path", f"cannot import {str(file)!r}"),
                source=source,
            )
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(
                ConfigProblem(
                    f"{field}.guardrail_path",
                    f"importing {str(file)!r} failed: {type(exc).__name__}: {exc}",
                ),
                source=source,
            ) from exc
        sys.modules[mod_name] = module
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Guardrail)):
        found = "not defined" if cls is None else f"a {type(cls).__name__}, not a Guardrail"
        raise ConfigError(
            ConfigProblem(
                f"{field}.guardrail_class",
                f"{class_name!r} in {file.name} is {found}; subclass "
                "gatewaykit.guardrails.Guardrail (or TextGuardrail)",
            ),
            source=source,
        )
    return cls


def build_custom(
    cls: type[Guardrail],
    params: Mapping[str, Any],
    *,
    name: str,
    stages: Collection[Stage],
    default_on: bool,
) -> Guardrail:
    """An instance of a loaded class, with the config's own keys passed when it accepts them."""
    sig = inspect.signature(cls.__init__)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    kwargs = {k: v for k, v in params.items() if accepts_any or k in sig.parameters}
    g = cls(**kwargs)
    g.name = name
    g.stages = frozenset(stages)
    g.default_on = default_on
    return g

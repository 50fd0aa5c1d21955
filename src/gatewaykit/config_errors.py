"""Config validation errors: every problem names the field path and the fix."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigProblem"]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in a config file.

    Example::

        ConfigProblem("model_list[2].litellm_params.rpm", "must be a positive integer, got -5")
    """

    path: str
    """Dotted/indexed path of the bad field, e.g. ``router_settings.fallbacks[0]``."""
    message: str
    """What is wrong and how to fix it."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ValueError):
    """A config file (or dict) that cannot drive a gateway model or router.

    It is a ``ValueError`` rather than a model error: it is raised before any call is made,
    and callers fix the file rather than retry. ``problems`` lists every problem found,
    not just the first, so one run shows everything to fix.

    Example::

        try:
            GatewayConfig.from_yaml("config.yaml")
        except ConfigError as e:
            for p in e.problems:
                print(p.path, "->", p.message)
    """

    def __init__(self, problems: list[ConfigProblem] | ConfigProblem, *, source: str | None = None):
        self.problems: list[ConfigProblem] = (
            [problems] if isinstance(problems, ConfigProblem) else list(problems)
        )
        self.source = source
        head = f"invalid gateway config{f' {source}' if source else ''}"
        body = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{head}:\n{body}" if len(self.problems) != 1 else f"{head}: {self.problems[0]}"
        )

    @property
    def path(self) -> str:
        """Path of the first problem (the field a caller most likely wants)."""
        return self.problems[0].path if self.problems else ""

    @property
    def paths(self) -> list[str]:
        return [p.path for p in self.problems]

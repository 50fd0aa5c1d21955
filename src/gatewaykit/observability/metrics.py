"""Prometheus metrics for every model call, named after the LiteLLM proxy's own.

:class:`GatewayMetrics` is a LangChain callback handler: pass it in ``callbacks`` (or let
:meth:`GatewayMetrics.instrument` do it) and every call of a :class:`~gatewaykit.GatewayChatModel`,
a :class:`~gatewaykit.RouterChatModel` or any other chat model is counted: requests by model,
deployment and status, latency and time-to-first-token histograms, tokens, spend, retries,
fallbacks, cache hits and misses. Cooldowns come from the router engine itself
(:meth:`GatewayMetrics.watch`), budgets are read from a
:class:`~gatewaykit.BudgetManager` when Prometheus scrapes.

Names mirror LiteLLM's ``litellm_*`` metrics with a ``gatewaykit_`` prefix, so a dashboard
built for the proxy reads the client's side with one substitution, and both can be scraped into
the same Prometheus without summing the same spend twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk, LLMResult
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gatewaykit.observability._extract import Outcome, failure_of, outcome_of, requested_model

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from gatewaykit.cost import BudgetManager

__all__ = ["LATENCY_BUCKETS", "METRIC_NAMES", "GatewayMetrics", "default_metrics"]

logger = logging.getLogger("gatewaykit.observability")

# LiteLLM's own latency buckets (litellm/types/integrations/prometheus.py), in seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.00625, 0.0125, 0.025, 0.05, 0.1, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0,
    5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 10.0, 15.0, 20.0, 25.0, 30.0, 60.0, 120.0,
    180.0, 240.0, 300.0, float("inf"),
)  # fmt: skip

METRIC_NAMES: Mapping[str, str] = {
    # gatewaykit family name -> the LiteLLM proxy metric it mirrors
    "gatewaykit_requests_metric": "litellm_proxy_total_requests_metric",
    "gatewaykit_request_total_latency_metric": "litellm_request_total_latency_metric",
    "gatewaykit_llm_api_time_to_first_token_metric": "litellm_llm_api_time_to_first_token_metric",
    "gatewaykit_input_tokens_metric": "litellm_input_tokens_metric",
    "gatewaykit_output_tokens_metric": "litellm_output_tokens_metric",
    "gatewaykit_total_tokens_metric": "litellm_total_tokens_metric",
    "gatewaykit_spend_metric": "litellm_spend_metric",
    "gatewaykit_deployment_success_responses": "litellm_deployment_success_responses",
    "gatewaykit_deployment_failure_responses": "litellm_deployment_failure_responses",
    "gatewaykit_deployment_total_requests": "litellm_deployment_total_requests",
    "gatewaykit_retries_metric": "(none: the proxy does not count its retries)",
    "gatewaykit_deployment_successful_fallbacks": "litellm_deployment_successful_fallbacks",
    "gatewaykit_deployment_failed_fallbacks": "litellm_deployment_failed_fallbacks",
    "gatewaykit_deployment_cooled_down": "litellm_deployment_cooled_down",
    "gatewaykit_cache_hits_metric": "litellm_cache_hits_metric",
    "gatewaykit_cache_misses_metric": "litellm_cache_misses_metric",
    "gatewaykit_remaining_budget_metric": "litellm_remaining_{team,api_key,user,...}_budget_metric",
    "gatewaykit_max_budget_metric": "litellm_{team,api_key,user,...}_max_budget_metric",
    "gatewaykit_budget_remaining_hours_metric": "litellm_{team,...}_budget_remaining_hours_metric",
}
"""Every metric family this module exposes, with the LiteLLM metric it mirrors."""

_MODEL = ("requested_model", "model")
_DEPLOYMENT = ("requested_model", "model_group", "deployment")


class _Run:
    __slots__ = ("requested", "started", "ttft")

    def __init__(self, requested: str) -> None:
        self.requested = requested
        self.started = time.perf_counter()
        self.ttft: float | None = None


class GatewayMetrics(BaseCallbackHandler):
    """Counts every model call into a Prometheus registry.

    The registry is private by default, so several apps (and tests) in one process never clash;
    pass ``registry=prometheus_client.REGISTRY`` to join the process-wide one. Serve it with
    :func:`gatewaykit.observability.metrics_app` or :func:`~gatewaykit.observability.mount_metrics`.
    The handler never raises into a call and takes a few microseconds per call.

    Example::

        from gatewaykit import RouterChatModel
        from gatewaykit.observability import GatewayMetrics, mount_metrics

        metrics = GatewayMetrics()
        router = metrics.instrument(RouterChatModel.from_config("config.yaml", model="smart"))
        router.invoke("hi")
        mount_metrics(app, metrics.registry)        # GET /metrics
    """

    run_inline = True  # cheap and thread-safe: no executor hop for async runs
    ignore_chain = True
    ignore_agent = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        budgets: BudgetManager | Sequence[BudgetManager] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._runs: dict[UUID, _Run] = {}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._watched: set[int] = set()
        self._lock = threading.Lock()
        try:
            self._register(self.registry, buckets)
        except ValueError as exc:  # prometheus_client: "Duplicated timeseries in CollectorRegistry"
            raise ValueError(
                "this registry already holds gatewaykit metrics: share one GatewayMetrics "
                "(default_metrics() for prometheus_client.REGISTRY) or give each its own "
                f"CollectorRegistry ({exc})"
            ) from exc
        for manager in [budgets] if not isinstance(budgets, Sequence) else budgets:
            self.watch_budgets(manager)

    def _register(self, r: CollectorRegistry, buckets: Sequence[float]) -> None:
        self.requests = Counter(
            "gatewaykit_requests_metric",
            "Model calls, by requested model, serving group and deployment, and status "
            "('success' or the typed error's kind)",
            ["requested_model", "model", "deployment", "status", "status_code"],
            registry=r,
        )
        self.latency = Histogram(
            "gatewaykit_request_total_latency_metric",
            "Wall time of a whole call (all retries and fallbacks), seconds",
            _MODEL,
            buckets=buckets,
            registry=r,
        )
        self.ttft = Histogram(
            "gatewaykit_llm_api_time_to_first_token_metric",
            "Time to the first streamed token, seconds (streamed calls only)",
            _MODEL,
            buckets=buckets,
            registry=r,
        )
        self.input_tokens = Counter(
            "gatewaykit_input_tokens_metric", "Input (prompt) tokens", _MODEL, registry=r
        )
        self.output_tokens = Counter(
            "gatewaykit_output_tokens_metric", "Output (completion) tokens", _MODEL, registry=r
        )
        self.total_tokens = Counter(
            "gatewaykit_total_tokens_metric", "Input plus output tokens", _MODEL, registry=r
        )
        self.spend = Counter(
            "gatewaykit_spend_metric",
            "Spend in USD: the gateway-reported cost, else the configured per-token prices",
            _MODEL,
            registry=r,
        )
        self.deployment_success = Counter(
            "gatewaykit_deployment_success_responses",
            "Attempts a deployment answered",
            _DEPLOYMENT,
            registry=r,
        )
        self.deployment_failure = Counter(
            "gatewaykit_deployment_failure_responses",
            "Attempts a deployment failed, by HTTP status and error kind",
            [*_DEPLOYMENT, "exception_status", "exception_class"],
            registry=r,
        )
        self.deployment_total = Counter(
            "gatewaykit_deployment_total_requests",
            "Attempts sent to a deployment",
            _DEPLOYMENT,
            registry=r,
        )
        self.retries = Counter(
            "gatewaykit_retries_metric",
            "Extra attempts within the same model group after a failed attempt",
            ["requested_model", "model_group"],
            registry=r,
        )
        self.fallbacks_ok = Counter(
            "gatewaykit_deployment_successful_fallbacks",
            "Calls answered by a fallback group",
            ["requested_model", "fallback_model"],
            registry=r,
        )
        self.fallbacks_failed = Counter(
            "gatewaykit_deployment_failed_fallbacks",
            "Calls that moved to a fallback group and still failed",
            ["requested_model", "fallback_model"],
            registry=r,
        )
        self.cooldowns = Counter(
            "gatewaykit_deployment_cooled_down",
            "Times the router cooled a deployment down, by the status that caused it",
            ["model_group", "deployment", "exception_status", "exception_class"],
            registry=r,
        )
        self.cache_hits = Counter(
            "gatewaykit_cache_hits_metric",
            "Answers served from a cache ('local' response cache or the 'gateway' cache)",
            ["requested_model", "cache"],
            registry=r,
        )
        self.cache_misses = Counter(
            "gatewaykit_cache_misses_metric",
            "Calls the response cache could not answer",
            ["requested_model", "cache"],
            registry=r,
        )
        self._budgets = _BudgetCollector()
        r.register(self._budgets)

    # ------------------------------------------------------------------ wiring

    def watch(self, target: Any) -> GatewayMetrics:
        """Count cooldowns of a :class:`~gatewaykit.RouterEngine` (or a RouterChatModel's engine)
        and expose its budgets. Idempotent."""
        engine = getattr(target, "engine", target)
        listeners = getattr(engine, "listeners", None)
        if listeners is None:
            raise TypeError(
                f"watch() takes a RouterEngine or a model with an .engine, got {type(target)!r}"
            )
        with self._lock:
            if id(engine) in self._watched:
                return self
            self._watched.add(id(engine))
        listeners.append(self._on_engine_event)
        budgets = getattr(engine, "budgets", None)
        if budgets:
            self.watch_budgets(budgets)
        return self

    def watch_budgets(self, manager: BudgetManager) -> GatewayMetrics:
        """Report this manager's budgets (remaining, limit, hours to reset) on every scrape."""
        self._budgets.add(manager)
        return self

    def instrument(self, model: BaseChatModel) -> BaseChatModel:
        """A copy of ``model`` that reports to these metrics (its engine watched, if routed)."""
        if getattr(model, "engine", None) is not None:
            self.watch(model)
        callbacks = model.callbacks
        if callbacks is None:
            handlers: Any = [self]
        elif isinstance(callbacks, list):
            handlers = [*callbacks, self] if self not in callbacks else list(callbacks)
        else:  # a BaseCallbackManager
            handlers = callbacks.copy()
            handlers.add_handler(self, inherit=True)
        return model.model_copy(update={"callbacks": handlers})

    # ------------------------------------------------------------------ callback events

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._runs[run_id] = _Run(requested_model(metadata, kwargs.get("invocation_params")))

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._runs[run_id] = _Run(requested_model(metadata, kwargs.get("invocation_params")))

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        run = self._runs.get(run_id)
        if run is None or run.ttft is not None:
            return
        message = getattr(chunk, "message", None)
        if token or getattr(message, "tool_call_chunks", None):
            # observed at the end, when the serving model group is known
            run.ttft = time.perf_counter() - run.started

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        elapsed = time.perf_counter() - run.started
        try:
            self.record(outcome_of(response, run.requested), elapsed, ttft_s=run.ttft)
        except Exception:  # a metrics bug must never fail the call it counts
            logger.exception("gatewaykit metrics: could not record a call")

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        elapsed = time.perf_counter() - run.started
        try:
            self.record(failure_of(error, run.requested), elapsed)
        except Exception:
            logger.exception("gatewaykit metrics: could not record a failed call")

    # ------------------------------------------------------------------ recording

    def record(self, out: Outcome, elapsed_s: float, *, ttft_s: float | None = None) -> None:
        """Count one finished call (public so other integrations can feed the same registry)."""
        req, model = out.requested_model, out.model
        self._at(self.requests, req, model, out.deployment, out.status, out.status_code).inc()
        self._at(self.latency, req, model).observe(elapsed_s)
        if ttft_s is not None:
            self._at(self.ttft, req, model).observe(ttft_s)
        if out.cache is not None:
            self._at(self.cache_hits, req, out.cache).inc()
        elif out.cache_miss:
            self._at(self.cache_misses, req, "local").inc()
        if out.input_tokens:
            self._at(self.input_tokens, req, model).inc(out.input_tokens)
        if out.output_tokens:
            self._at(self.output_tokens, req, model).inc(out.output_tokens)
        if out.total_tokens:
            self._at(self.total_tokens, req, model).inc(out.total_tokens)
        if out.cost:
            self._at(self.spend, req, model).inc(out.cost)
        routing = out.routing
        if routing is None:
            if out.deployment and out.deployment != "cache":
                self._deployment_result(req, model, out.deployment, out)
            return
        previous_group: str | None = None
        for attempt in routing.get("attempts") or ():
            group = str(attempt.get("group") or model)
            dep = str(attempt.get("deployment") or "")
            self._at(self.deployment_total, req, group, dep).inc()
            if attempt.get("ok"):
                self._at(self.deployment_success, req, group, dep).inc()
            else:
                status = attempt.get("status")
                self._at(
                    self.deployment_failure,
                    req,
                    group,
                    dep,
                    "" if status is None else str(status),
                    str(attempt.get("kind") or ""),
                ).inc()
            if previous_group == group:
                self._at(self.retries, req, group).inc()
            previous_group = group
        fallbacks = routing.get("fallbacks") or ()
        if fallbacks:
            counter = self.fallbacks_ok if out.status == "success" else self.fallbacks_failed
            self._at(counter, req, str(fallbacks[-1])).inc()

    def _deployment_result(self, req: str, group: str, dep: str, out: Outcome) -> None:
        self._at(self.deployment_total, req, group, dep).inc()
        if out.status == "success":
            self._at(self.deployment_success, req, group, dep).inc()
        else:
            self._at(self.deployment_failure, req, group, dep, out.status_code, out.status).inc()

    def _on_engine_event(self, event: str, info: dict[str, Any]) -> None:
        if event != "cooldown":
            return
        try:
            status = info.get("status")
            self._at(
                self.cooldowns,
                str(info.get("group") or ""),
                str(info.get("deployment") or ""),
                "" if status is None else str(status),
                str(info.get("kind") or ""),
            ).inc()
        except Exception:  # runs on the request path: never let it raise there
            logger.exception("gatewaykit metrics: could not count a cooldown")

    def _at(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, memoised: label validation is most of a counter update."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # ------------------------------------------------------------------ reading back

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0.0 when never set): handy in tests and health checks.

        ``name`` is the sample name as exposed, e.g. ``gatewaykit_requests_metric_total``.
        """
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got

    def families(self) -> list[str]:
        """The metric family names this registry exposes."""
        return sorted({m.name for m in self.registry.collect()})


class _BudgetCollector(Collector):
    """Reads budget status when Prometheus scrapes, so gauges are never stale."""

    def __init__(self) -> None:
        self._managers: list[BudgetManager] = []

    def add(self, manager: BudgetManager) -> None:
        if all(m is not manager for m in self._managers):
            self._managers.append(manager)

    def describe(self) -> Iterable[Any]:
        return list(self._families())

    def collect(self) -> Iterator[Any]:
        remaining, limit, hours = self._families()
        now = time.time()
        for manager in self._managers:
            try:
                statuses = manager.status()
            except Exception:  # a ledger outage must not break the whole scrape
                logger.exception("gatewaykit metrics: could not read budget status")
                continue
            for s in statuses:
                labels = [s.budget.scope, s.key or "", str(s.budget.window)]
                remaining.add_metric(labels, s.remaining)
                limit.add_metric(labels, s.budget.limit)
                if s.resets_at is not None:
                    hours.add_metric(labels, max(0.0, (s.resets_at - now) / 3600.0))
        yield remaining
        yield limit
        yield hours

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["scope", "key", "window"]
        return (
            GaugeMetricFamily(
                "gatewaykit_remaining_budget_metric",
                "USD left in the budget's current window (limit - spent - reserved)",
                labels=labels,
            ),
            GaugeMetricFamily(
                "gatewaykit_max_budget_metric", "The budget's limit in USD", labels=labels
            ),
            GaugeMetricFamily(
                "gatewaykit_budget_remaining_hours_metric",
                "Hours until the budget's window resets",
                labels=labels,
            ),
        )


_default: GatewayMetrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> GatewayMetrics:
    """The process-wide instance on ``prometheus_client.REGISTRY`` (what a config's
    ``callbacks: [prometheus]`` switches on), created on first use.

    Example::

        from prometheus_client import start_http_server
        start_http_server(9100)            # serves default_metrics() too
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = GatewayMetrics(REGISTRY)
        return _default

"""The one composition root: from the settings, every deployment and router, the store, the
services and the gateway, built once and closed together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from codey.backends.llamacpp import LlamaCppBackend
from codey.backends.registry import BackendContext, create
from codey.config import Service, Settings
from codey.errors import ConfigError
from codey.gateway.attempts import RouteLog
from codey.gateway.breaker import Breaker
from codey.gateway.clock import Clock
from codey.gateway.metrics import Metrics
from codey.gateway.pipeline import Gateway
from codey.gateway.routing import Member, Router
from codey.provision.assemble import Progress
from codey.provision.catalogue import find
from codey.services import Services
from codey.services.chat import ChatService
from codey.services.completion import CompletionService
from codey.services.generation import GenerationService
from codey.store.batches import BatchStore, SQLiteBatchStore
from codey.store.conversations import ConversationStore
from codey.store.redis import connect
from codey.store.redis_batches import RedisBatchStore
from codey.store.sqlite import Database


@dataclass
class Runtime:
    settings: Settings
    routers: dict[str, Router]
    """Every configured model by name."""
    engines: dict[str, LlamaCppBackend]
    """The engine process of each embedded model a deployment uses, by model id."""
    database: Database
    conversations: ConversationStore
    batches: BatchStore
    metrics: Metrics
    gateway: Gateway

    @classmethod
    def start(
        cls,
        settings: Settings,
        progress: Progress | None = None,
        backend: LlamaCppBackend | None = None,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
    ) -> Runtime:
        """Build every deployment (an embedded model's engine starts when the first deployment
        asks for it; a given one serves them all), open the store and put the gateway in
        front."""
        metrics = metrics or Metrics()
        engines = _Engines(settings, progress, backend)
        routers = build_routers(settings, engines.get, metrics)
        for engine in engines.loaded.values():
            engine.engine.on_restart.append(metrics.engine_restarts.labels(engine.model_id).inc)
        database = Database(settings.store.sqlite_path)
        conversations = ConversationStore(database)

        def services_on(model: str, log: RouteLog, background: bool) -> Services:
            backend = routers[model].traced(log, background=background)
            return Services.over(backend, conversations, settings)

        gateway = Gateway.build(settings, database, services_on, clock=clock, metrics=metrics)
        batches: BatchStore = SQLiteBatchStore(database)
        if settings.redis_url:  # shared mode: any replica runs and resumes any job
            batches = RedisBatchStore(connect(settings.redis_url), settings.batch.lease_seconds)
        return cls(
            settings, routers, engines.loaded, database, conversations, batches, metrics, gateway
        )

    def services(self, service: Service) -> Services:
        """The services over the model that `service` runs on, outside the gateway (the CLI,
        benchmarks and evaluations call the model directly)."""
        router = self.routers[self.settings.model_for(service)]
        return Services.over(router, self.conversations, self.settings)

    @property
    def embedded(self) -> LlamaCppBackend | None:
        """The engine of the first embedded model (the one the benchmarks measure)."""
        return next(iter(self.engines.values()), None)

    def engine_for(self, service: Service) -> LlamaCppBackend | None:
        """The engine that runs `service`'s model, if it is embedded."""
        route = self.settings.models[self.settings.model_for(service)]
        for deployment in route.deployments:
            if deployment.backend == "llamacpp":
                return self.engines.get(deployment.model_id or "") or self.embedded
        return None

    @property
    def generation(self) -> GenerationService:
        return self.services("generation").generation

    @property
    def chat(self) -> ChatService:
        return self.services("chat").chat

    @property
    def completion(self) -> CompletionService:
        return self.services("completion").completion

    async def close(self) -> None:
        for router in self.routers.values():
            await router.close()
        self.database.close()


class _Engines:
    """One engine process per embedded model, each started on first use."""

    def __init__(
        self, settings: Settings, progress: Progress | None, given: LlamaCppBackend | None
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.given = given
        self.loaded: dict[str, LlamaCppBackend] = {}

    def get(self, name: str | None) -> LlamaCppBackend:
        if self.given is not None:
            self.loaded.setdefault(self.given.model_id, self.given)
            return self.given
        key = name or ""
        if key not in self.loaded:
            model = find(name) if name else None
            self.loaded[key] = LlamaCppBackend.load(self.settings.model, self.progress, model)
        return self.loaded[key]


def build_routers(
    settings: Settings,
    embedded: Callable[[str | None], LlamaCppBackend] | None,
    metrics: Metrics | None = None,
) -> dict[str, Router]:
    """One router per model, fallbacks linked; each deployment built once, by the backend
    registered under its name. `embedded` starts (or returns) an embedded model's engine."""

    def no_engine(name: str | None) -> LlamaCppBackend:
        raise ConfigError("A llamacpp deployment needs the embedded engine, and none is given.")

    context = BackendContext(settings.resilience, embedded or no_engine)
    resilience = settings.resilience
    routers: dict[str, Router] = {}
    for model, route in settings.models.items():
        members = [
            Member(
                name=d.name or model,
                backend=create(d, context),
                weight=d.weight,
                max_concurrency=d.max_concurrency,
                breaker=Breaker(resilience.breaker_failures, resilience.breaker_reset_seconds),
            )
            for d in route.deployments
        ]
        routers[model] = Router(model, members, resilience, metrics)
    for model, route in settings.models.items():
        if route.fallback is not None:
            routers[model].fallback = routers[route.fallback]
    return routers

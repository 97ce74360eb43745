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
    embedded: LlamaCppBackend | None
    """The engine process of the embedded model, when a deployment uses it."""
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
        """Build every deployment (the embedded engine starts when the first one asks for it,
        unless one is given), open the store and put the gateway in front."""
        metrics = metrics or Metrics()
        engine = _Engine(settings, progress, backend)
        routers = build_routers(settings, engine.get, metrics)
        if engine.loaded is not None:
            engine.loaded.engine.on_restart.append(metrics.engine_restarts.inc)
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
            settings, routers, engine.loaded, database, conversations, batches, metrics, gateway
        )

    def services(self, service: Service) -> Services:
        """The services over the model that `service` runs on, outside the gateway (the CLI,
        benchmarks and evaluations call the model directly)."""
        router = self.routers[self.settings.model_for(service)]
        return Services.over(router, self.conversations, self.settings)

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


class _Engine:
    """The one embedded engine of this process, started on first use."""

    def __init__(
        self, settings: Settings, progress: Progress | None, given: LlamaCppBackend | None
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.loaded = given

    def get(self) -> LlamaCppBackend:
        if self.loaded is None:
            self.loaded = LlamaCppBackend.load(self.settings.model, self.progress)
        return self.loaded


def build_routers(
    settings: Settings,
    embedded: Callable[[], LlamaCppBackend] | None,
    metrics: Metrics | None = None,
) -> dict[str, Router]:
    """One router per model, fallbacks linked; each deployment built once, by the backend
    registered under its name. `embedded` starts (or returns) this process's engine."""

    def no_engine() -> LlamaCppBackend:
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

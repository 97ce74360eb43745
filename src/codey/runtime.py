"""Build the object graph once from the settings: backends and routers, store, services."""

from __future__ import annotations

from dataclasses import dataclass

from codey.backends.base import Backend
from codey.backends.llamacpp import LlamaCppBackend
from codey.backends.registry import BackendContext, create
from codey.config import Service, Settings
from codey.gateway.breaker import Breaker
from codey.gateway.metrics import Metrics
from codey.gateway.routing import Member, Router
from codey.provision.assemble import Progress
from codey.services.chat import ChatService
from codey.services.completion import CompletionService
from codey.services.generation import GenerationService
from codey.store.conversations import ConversationStore
from codey.store.sqlite import Database


@dataclass
class Runtime:
    settings: Settings
    routers: dict[str, Router]
    """Every configured model by name."""
    embedded: LlamaCppBackend | None
    """The in-process engine, when a deployment uses it."""
    database: Database
    metrics: Metrics
    generation: GenerationService
    chat: ChatService
    completion: CompletionService

    @classmethod
    def start(
        cls,
        settings: Settings,
        progress: Progress | None = None,
        backend: LlamaCppBackend | None = None,
        metrics: Metrics | None = None,
    ) -> Runtime:
        """Load the embedded model if a deployment uses it (unless one is given), connect
        the others, and open the store."""
        metrics = metrics or Metrics()
        deployments = [d for r in settings.models.values() for d in r.deployments]
        embedded = backend
        if embedded is None and any(d.backend == "llamacpp" for d in deployments):
            embedded = LlamaCppBackend.load(settings.model, progress)
        if embedded is not None:
            embedded.engine.on_restart.append(metrics.engine_restarts.inc)
        routers = build_routers(settings, embedded, metrics)
        database = Database(settings.store.sqlite_path)

        def routed(service: Service) -> Router:
            return routers[settings.model_for(service)]

        return cls(
            settings=settings,
            routers=routers,
            embedded=embedded,
            database=database,
            metrics=metrics,
            generation=GenerationService(routed("generation")),
            chat=ChatService(routed("chat"), ConversationStore(database)),
            completion=CompletionService(routed("completion")),
        )

    @property
    def backend(self) -> Backend:
        """The generation service's model."""
        return self.generation.backend

    def chat_on(self, model: str) -> ChatService:
        """Chat on the named model; an alias means the configured one."""
        router = self.routers.get(model)
        if router is None or router is self.chat.backend:
            return self.chat
        return ChatService(router, self.chat.conversations)

    def completion_on(self, model: str) -> CompletionService:
        """Completion on the named model; an alias means the configured one."""
        router = self.routers.get(model)
        if router is None or router is self.completion.backend:
            return self.completion
        return CompletionService(router)

    async def close(self) -> None:
        for router in self.routers.values():
            await router.close()
        self.database.close()


def build_routers(
    settings: Settings, embedded: LlamaCppBackend | None, metrics: Metrics | None = None
) -> dict[str, Router]:
    """One router per model, fallbacks linked; each deployment built once, by the backend
    registered under its name."""

    def engine() -> LlamaCppBackend:
        assert embedded is not None, "the embedded engine is loaded before its deployments"
        return embedded

    context = BackendContext(settings.resilience, engine)
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

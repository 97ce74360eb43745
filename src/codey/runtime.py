"""Build the object graph once from the settings: backend, store and the three services."""

from __future__ import annotations

from dataclasses import dataclass

from codey.backends.base import Backend
from codey.backends.llamacpp import LlamaCppBackend
from codey.config import Settings
from codey.provision.assemble import Progress
from codey.services.chat import ChatService
from codey.services.completion import CompletionService
from codey.services.generation import GenerationService
from codey.store.conversations import ConversationStore
from codey.store.sqlite import Database


@dataclass
class Runtime:
    settings: Settings
    backend: Backend
    database: Database
    generation: GenerationService
    chat: ChatService
    completion: CompletionService

    @classmethod
    def start(
        cls, settings: Settings, progress: Progress | None = None, backend: Backend | None = None
    ) -> Runtime:
        """Load the model (unless a backend is given) and open the store."""
        backend = backend or LlamaCppBackend.load(settings.model, progress)
        database = Database(settings.store.sqlite_path)
        return cls(
            settings=settings,
            backend=backend,
            database=database,
            generation=GenerationService(backend),
            chat=ChatService(backend, ConversationStore(database)),
            completion=CompletionService(backend),
        )

    async def close(self) -> None:
        await self.backend.close()
        self.database.close()

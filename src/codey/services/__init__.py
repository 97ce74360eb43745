"""The three jobs (generation, chat, completion), independent of model and dialect."""

from __future__ import annotations

from dataclasses import dataclass

from codey.backends.base import Backend
from codey.config import Settings
from codey.services.chat import ChatService
from codey.services.completion import CompletionService
from codey.services.generation import GenerationService
from codey.store.conversations import ConversationStore


@dataclass(frozen=True)
class Services:
    """The three services over one model's backend, with the defaults in Settings."""

    generation: GenerationService
    chat: ChatService
    completion: CompletionService

    @classmethod
    def over(
        cls, backend: Backend, conversations: ConversationStore, settings: Settings
    ) -> Services:
        return cls(
            GenerationService(backend, settings.generation),
            ChatService(backend, conversations, settings.chat),
            CompletionService(backend, settings.completion),
        )

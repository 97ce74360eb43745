"""Code chat: conversations with ids, stored so they survive restarts, sized to the context."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from codey.backends.base import Backend, ChatPrompt, Delta, Generation, Message
from codey.config import ChatSettings, SamplingDefaults
from codey.errors import ContextOverflow, InvalidRequest
from codey.services.sampling import Sampling
from codey.store.conversations import ConversationStore


@dataclass(frozen=True)
class ChatRequest:
    message: str
    conversation_id: str | None = None
    history: Sequence[Message] = ()
    """Earlier turns supplied by the caller; used to seed a new conversation."""
    language: str | None = None
    context: str | None = None
    max_tokens: int | None = None
    """None, here and below, leaves the value to the service's defaults (`[chat]`)."""
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None


@dataclass
class ChatResult:
    response: str
    conversation_id: str
    confidence: float
    prompt_tokens: int
    completion_tokens: int
    history_messages: int
    """How many earlier messages fitted the context window and were sent."""
    elapsed_ms: float
    finish_reason: str

    @property
    def tokens_used(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def system_prompt(language: str | None, context: str | None) -> str:
    role = "You are codey, an expert programming assistant"
    role += f" specialised in {language}." if language else "."
    role += (
        " Answer questions about code precisely and briefly, show code in fenced blocks, "
        "and remember what the user told you earlier in this conversation."
    )
    if context and context.strip():
        role += f"\n\nContext for this conversation:\n```\n{context.strip()}\n```"
    return role


class ChatService:
    def __init__(
        self,
        backend: Backend,
        conversations: ConversationStore,
        defaults: SamplingDefaults | None = None,
    ) -> None:
        self.backend = backend
        self.conversations = conversations
        self.defaults = defaults or ChatSettings()

    async def chat(self, request: ChatRequest) -> ChatResult:
        if not request.message.strip():
            raise InvalidRequest("The message is empty.", hint="Say something to the assistant.")
        started = time.perf_counter()
        store = self.conversations
        if request.conversation_id:
            conversation = await asyncio.to_thread(store.get, request.conversation_id)
            if request.language or request.context:
                await asyncio.to_thread(
                    store.update,
                    conversation.id,
                    language=request.language,
                    context=request.context,
                )
            stored = await asyncio.to_thread(store.messages, conversation.id)
            history = [Message(m.role, m.content) for m in stored]  # type: ignore[arg-type]
            language = request.language or conversation.language
            context = request.context or conversation.context
        else:
            conversation = await asyncio.to_thread(
                store.create, language=request.language, context=request.context
            )
            history = [m for m in request.history if m.role in ("user", "assistant")]
            if history:
                await asyncio.to_thread(
                    store.append, conversation.id, *[(m.role, m.content) for m in history]
                )
            language, context = request.language, request.context
        system = Message("system", system_prompt(language, context))
        question = Message("user", request.message)
        params = Sampling(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k,
            seed=request.seed,
        ).resolve(self.defaults)
        messages = await self._fit(system, history, question, params.max_tokens)
        generation = await self.backend.generate(ChatPrompt(messages), params)
        choice = generation.choices[0]
        answer = choice.text.strip()
        await asyncio.to_thread(
            store.append, conversation.id, ("user", request.message), ("assistant", answer)
        )
        return ChatResult(
            response=answer,
            conversation_id=conversation.id,
            confidence=round(choice.confidence, 4),
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            history_messages=len(messages) - 2,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            finish_reason=choice.finish_reason,
        )

    async def reply(self, messages: Sequence[Message], sampling: Sampling) -> Generation:
        """Answer a whole conversation given by the caller, storing nothing."""
        return await self.backend.generate(self._checked(messages), sampling.resolve(self.defaults))

    def stream_reply(self, messages: Sequence[Message], sampling: Sampling) -> AsyncIterator[Delta]:
        """`reply`, token by token."""
        return self.backend.stream(self._checked(messages), sampling.resolve(self.defaults))

    @staticmethod
    def _checked(messages: Sequence[Message]) -> ChatPrompt:
        if not any(m.content.strip() for m in messages if m.role == "user"):
            raise InvalidRequest(
                "The conversation has no user message with content.",
                hint="Add a message with role 'user'.",
            )
        return ChatPrompt(list(messages))

    async def _fit(
        self, system: Message, history: list[Message], question: Message, max_tokens: int
    ) -> list[Message]:
        """System prompt, the newest history that fits beside room for the answer, question.

        Token counts grow with the number of turns kept, so a binary search over that number
        finds the most that fit with a few exact counts of the rendered prompt.
        """

        def window(keep: int) -> list[Message]:
            kept = history[len(history) - keep :] if keep else []
            while kept and kept[0].role != "user":  # a window opens on a user turn
                kept = kept[1:]
            return [system, *kept, question]

        async def fits(keep: int) -> tuple[bool, int]:
            used = await self.backend.count_tokens(ChatPrompt(window(keep)))
            # Read after counting: a remote engine tells its window with its first count.
            return used <= self.backend.context_length - max_tokens, used

        ok, used = await fits(0)
        if not ok:
            raise ContextOverflow(used, max_tokens, self.backend.context_length)
        low, high = 0, len(history)
        if (await fits(high))[0]:
            return window(high)
        while high - low > 1:
            middle = (low + high) // 2
            if (await fits(middle))[0]:
                low = middle
            else:
                high = middle
        return window(low)

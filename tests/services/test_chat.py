"""Chat on the scripted fake (tests/fake_script.py) and a real SQLite store."""

from __future__ import annotations

import pytest

from codey.backends.base import ChatPrompt, Message
from codey.backends.fake import FakeBackend
from codey.errors import ContextOverflow, InvalidRequest, NotFound
from codey.runtime import Runtime
from codey.services.chat import ChatRequest, ChatService, system_prompt
from codey.store.conversations import ConversationStore
from codey.store.sqlite import Database


def test_the_system_prompt_sets_role_language_and_context() -> None:
    prompt = system_prompt("go", "package main uses cobra")
    assert "go" in prompt and "package main uses cobra" in prompt


async def test_a_conversation_remembers_earlier_turns(fake_runtime: Runtime) -> None:
    first = await fake_runtime.chat.chat(
        ChatRequest("My name is Ada.", max_tokens=32, temperature=0)
    )
    second = await fake_runtime.chat.chat(
        ChatRequest(
            "What is my name?",
            conversation_id=first.conversation_id,
            max_tokens=32,
            temperature=0,
        )
    )
    assert second.conversation_id == first.conversation_id
    assert second.history_messages == 2
    assert "Ada" in second.response
    assert second.prompt_tokens > first.prompt_tokens
    stored = fake_runtime.chat.conversations.messages(first.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]


async def test_history_given_by_the_caller_seeds_a_new_conversation(fake_runtime: Runtime) -> None:
    result = await fake_runtime.chat.chat(
        ChatRequest(
            "What is my name?",
            history=[Message("user", "My name is Grace."), Message("assistant", "Hi Grace!")],
            max_tokens=32,
            temperature=0,
        )
    )
    assert "Grace" in result.response
    assert len(fake_runtime.chat.conversations.messages(result.conversation_id)) == 4


async def test_the_history_sent_is_the_newest_that_fits(
    tmp_path: pytest.TempPathFactory,
) -> None:
    backend = FakeBackend(context_length=600)
    history = []
    for n in range(40):
        history += [
            Message("user", f"Fact {n}: the value of k{n} is {n * n}."),
            Message("assistant", f"Noted k{n}."),
        ]
    store = ConversationStore(Database(tmp_path / "chat.db"))  # type: ignore[operator]
    service = ChatService(backend, store)
    system = Message("system", system_prompt(None, None))
    question = Message("user", "What is k39?")
    window = await service._fit(system, history, question, max_tokens=200)
    used = await backend.count_tokens(ChatPrompt(window))
    kept = window[1:-1]
    assert used <= 600 - 200
    assert 0 < len(kept) < len(history)
    assert kept == history[len(history) - len(kept) :]  # the newest, in order
    assert kept[0].role == "user"
    # one more turn would not have fitted
    bigger = [system, *history[len(history) - len(kept) - 2 :], question]
    assert await backend.count_tokens(ChatPrompt(bigger)) > 600 - 200


async def test_a_question_too_long_for_the_window_is_refused(
    tmp_path: pytest.TempPathFactory,
) -> None:
    store = ConversationStore(Database(tmp_path / "chat.db"))  # type: ignore[operator]
    service = ChatService(FakeBackend(context_length=600), store)
    with pytest.raises(ContextOverflow, match="context window is 600 tokens"):
        await service.chat(ChatRequest("explain " * 500, max_tokens=100))


async def test_bad_chat_requests(fake_runtime: Runtime) -> None:
    with pytest.raises(InvalidRequest, match="empty"):
        await fake_runtime.chat.chat(ChatRequest("  "))
    with pytest.raises(NotFound):
        await fake_runtime.chat.chat(ChatRequest("hi", conversation_id="missing"))

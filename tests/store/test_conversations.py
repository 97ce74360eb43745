from __future__ import annotations

import threading
from pathlib import Path

import pytest

from codey.errors import NotFound
from codey.store.conversations import ConversationStore
from codey.store.sqlite import Database


def test_conversations_survive_reopening_the_database(db_path: Path) -> None:
    db = Database(db_path)
    store = ConversationStore(db)
    conversation = store.create(language="python", context="a Flask app")
    store.append(conversation.id, ("user", "My name is Ada."), ("assistant", "Hello Ada."))
    db.close()

    reopened = ConversationStore(Database(db_path))
    assert reopened.get(conversation.id).context == "a Flask app"
    messages = reopened.messages(conversation.id)
    assert [(m.role, m.content) for m in messages] == [
        ("user", "My name is Ada."),
        ("assistant", "Hello Ada."),
    ]


def test_update_keeps_what_is_not_given(db_path: Path) -> None:
    store = ConversationStore(Database(db_path))
    conversation = store.create(language="python", context="ctx")
    store.update(conversation.id, language=None, context="new ctx")
    assert store.get(conversation.id).language == "python"
    assert store.get(conversation.id).context == "new ctx"


def test_an_unknown_id_is_not_found(db_path: Path) -> None:
    store = ConversationStore(Database(db_path))
    with pytest.raises(NotFound, match="no-such-id"):
        store.get("no-such-id")


def test_concurrent_appends_from_threads_lose_nothing(db_path: Path) -> None:
    store = ConversationStore(Database(db_path))
    conversation = store.create()

    def writer(n: int) -> None:
        for i in range(25):
            store.append(conversation.id, ("user", f"{n}-{i}"), ("assistant", f"ok {n}-{i}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    messages = store.messages(conversation.id)
    assert len(messages) == 8 * 25 * 2
    # each turn is stored whole: every user message is followed by its answer
    for question, answer in zip(messages[::2], messages[1::2], strict=True):
        assert answer.content == f"ok {question.content}"

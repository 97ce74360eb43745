"""Conversations and their messages, kept in SQLite so that a chat survives a restart."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from codey.errors import NotFound
from codey.store.sqlite import Database


@dataclass(frozen=True)
class StoredMessage:
    role: str
    content: str
    created_at: float


@dataclass(frozen=True)
class Conversation:
    id: str
    created_at: float
    language: str | None
    context: str | None


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, *, language: str | None = None, context: str | None = None) -> Conversation:
        conversation = Conversation(uuid.uuid4().hex, time.time(), language, context)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO conversations (id, created_at, language, context) VALUES (?, ?, ?, ?)",
                (conversation.id, conversation.created_at, language, context),
            )
        return conversation

    def get(self, conversation_id: str) -> Conversation:
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT id, created_at, language, context FROM conversations WHERE id = ?",
                (conversation_id,),
            ).fetchone()
        if row is None:
            raise NotFound(
                f"No conversation with id {conversation_id!r}.",
                hint="Leave the id out to start a new conversation.",
            )
        return Conversation(**dict(row))

    def update(self, conversation_id: str, *, language: str | None, context: str | None) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE conversations SET language = coalesce(?, language), "
                "context = coalesce(?, context) WHERE id = ?",
                (language, context, conversation_id),
            )

    def messages(self, conversation_id: str) -> list[StoredMessage]:
        with self._db.transaction() as conn:
            rows = conn.execute(
                "SELECT role, content, created_at FROM messages "
                "WHERE conversation_id = ? ORDER BY id",
                (conversation_id,),
            ).fetchall()
        return [StoredMessage(**dict(r)) for r in rows]

    def append(self, conversation_id: str, *messages: tuple[str, str]) -> None:
        """Add (role, content) pairs in one transaction, so a turn is stored whole or not at all."""
        now = time.time()
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT INTO messages (conversation_id, role, content, created_at) "
                "VALUES (?, ?, ?, ?)",
                [(conversation_id, role, content, now) for role, content in messages],
            )

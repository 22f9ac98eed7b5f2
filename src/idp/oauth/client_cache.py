"""A short-lived per-process cache of the client rows that client authentication reads.

Every token, introspection and revocation request authenticates a client; reading its row was
most of the cost of a client_credentials request (a database round trip for a row that changes
a few times a year). The cache keeps a copy of each row for `ttl` seconds.

Freshness: a change made through this process (the REST API, a service call) drops the entry at
once: when the change is flushed, and again when it commits, so a request that read the old row
meanwhile cannot put it back (a generation number refuses such late writes). Another process or
node (the `idp` command, the other servers) sees the change within `ttl` seconds: the same bound
the signing-key cache accepts. Unknown client ids are never cached, so guessing ids cannot fill it.
"""

from __future__ import annotations

import copy
import time

from sqlalchemy import event
from sqlalchemy.orm import Session

from idp.oauth.models import Client

_CHANGED = "idp_changed_client_ids"  # Session.info key: clients this transaction changed
_COLUMNS = tuple(column.key for column in Client.__table__.columns)


class ClientCache:
    def __init__(self, ttl: float, *, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, Client]] = {}
        # Bumped by every invalidation: a row read before it may be stale and is not stored.
        self.generation = 0

    def get(self, client_id: str) -> Client | None:
        entry = self._entries.get(client_id)
        if entry is None:
            return None
        if time.monotonic() - entry[0] >= self.ttl:
            del self._entries[client_id]
            return None
        return entry[1]

    def put(self, client: Client, generation: int) -> Client:
        """Store a detached copy of `client` (read when `generation` was current) and return it.
        The copy belongs to no session: no request can change the shared object by accident."""
        snapshot = Client(**{name: copy.deepcopy(getattr(client, name)) for name in _COLUMNS})
        if self.ttl > 0 and generation == self.generation:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[client.client_id] = (time.monotonic(), snapshot)
        return snapshot

    def invalidate(self, client_ids) -> None:
        self.generation += 1
        for client_id in client_ids:
            self._entries.pop(client_id, None)

    def watch(self, session_class: type[Session]) -> None:
        """Drop the entries of clients that sessions of `session_class` change (ORM flushes of
        a Client row: update, rotate, delete, product attach/detach)."""

        @event.listens_for(session_class, "after_flush")
        def _after_flush(session, _context):
            changed = {obj.client_id for obj in (*session.dirty, *session.deleted) if isinstance(obj, Client)}
            if changed:
                session.info.setdefault(_CHANGED, set()).update(changed)
                self.invalidate(changed)

        @event.listens_for(session_class, "after_commit")
        def _after_commit(session):
            changed = session.info.pop(_CHANGED, None)
            if changed:
                self.invalidate(changed)

        @event.listens_for(session_class, "after_rollback")
        def _after_rollback(session):
            session.info.pop(_CHANGED, None)

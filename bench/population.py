"""Signed-in people, made in bulk for the rows that need them: each a user, a browser session, a
grant (token family) born from that session and one unused refresh token in it. Inserted with
the project's models and hashing (`token_hash`) straight into the database: this is setup, not
the thing measured, and 100,000 sign-ins over HTTP would take longer than the whole run."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, insert, select, text

from idp.accounts.models import User
from idp.db import new_id, utcnow
from idp.oauth.models import Grant, RefreshToken
from idp.security import random_token, token_hash
from idp.sessions.models import BrowserSession

CHUNK = 5_000
MEASURED_TABLES = ("browser_sessions", "refresh_tokens", "grants")


class Population:
    def __init__(self, bench) -> None:
        self.bench = bench
        self.client_id = bench.clients["web"].client_id
        self.refresh_tokens: list[str] = []  # plaintext, in insertion order
        self.session_cookies: list[str] = []
        self._next_token = 0  # tokens before this were handed to a load generator (maybe spent)

    @property
    def size(self) -> int:
        return len(self.session_cookies)

    def ensure(self, count: int) -> None:
        """At least `count` signed-in people in the database."""
        if count > self.size:
            self.bench.run(self._insert(count - self.size))

    def take_refresh_tokens(self, count: int) -> list[str]:
        """`count` refresh tokens never handed out before (more people are made if needed)."""
        self.ensure(self._next_token + count)
        taken = self.refresh_tokens[self._next_token:self._next_token + count]
        self._next_token += count
        return taken

    async def _insert(self, count: int) -> None:
        s = self.bench.services()
        now = utcnow()
        for start in range(0, count, CHUNK):
            users, sessions, grants, tokens = [], [], [], []
            for _ in range(min(CHUNK, count - start)):
                user_id, session_id, grant_id = new_id(), new_id(), new_id()
                cookie, refresh = random_token("idps_"), random_token("idprt_")
                users.append({"id": user_id, "email": f"{user_id.lower()}@people.bench.example",
                              "email_verified": True, "name": "Bench Person", "password_must_change": False,
                              "created_at": now, "updated_at": now})
                sessions.append({"id": session_id, "token_hash": token_hash(cookie), "user_id": user_id,
                                 "auth_time": now, "amr": ["pwd"], "methods": ["pwd"], "acr": None,
                                 "created_at": now, "expires_at": now + s.sessions.ttl,
                                 "user_agent": "Mozilla/5.0 (X11; Linux x86_64) bench"})
                grants.append({"id": grant_id, "client_id": self.client_id, "user_id": user_id,
                               "session_id": session_id, "scope": "openid offline_access", "auth_time": now,
                               "amr": ["pwd"], "methods": ["pwd"], "created_at": now})
                tokens.append({"token_hash": token_hash(refresh), "grant_id": grant_id, "client_id": self.client_id,
                               "scope": "openid offline_access", "created_at": now,
                               "expires_at": now + timedelta(seconds=s.settings.refresh_token_ttl)})
                self.session_cookies.append(cookie)
                self.refresh_tokens.append(refresh)

            async def write(db, rows=(users, sessions, grants, tokens)):
                for model, values in zip((User, BrowserSession, Grant, RefreshToken), rows):
                    await db.execute(insert(model), values)

            await s.db.run(write)

    def bytes_per_row(self) -> dict[str, tuple[int, int]]:
        """Per table: (bytes including its indexes, rows)."""
        return self.bench.run(_table_sizes(self.bench.services()))


async def _table_sizes(s) -> dict[str, tuple[int, int]]:
    async def measure(db):
        sizes = {}
        for table in MEASURED_TABLES:
            rows = (await db.execute(select(func.count()).select_from(text(table)))).scalar_one()
            if s.db.is_sqlite:
                # dbstat: the pages of the table and of every index on it.
                used = (await db.execute(text(
                    "SELECT SUM(pgsize) FROM dbstat JOIN sqlite_master ON dbstat.name = sqlite_master.name "
                    "WHERE sqlite_master.tbl_name = :table"), {"table": table})).scalar_one()
            else:
                used = (await db.execute(text("SELECT pg_total_relation_size(CAST(:table AS regclass))"),
                                         {"table": table})).scalar_one()
            sizes[table] = (int(used or 0), int(rows))
        return sizes

    return await s.db.run(measure)

"""Helpers for the organisation tests: people, an organisation with one member per role, the
links the courier queued (read from the outbox, as the worker would), and counting owners."""

from __future__ import annotations

import json
import re
import secrets
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select

from idp.audit.service import Actor
from idp.courier.models import CourierMessage
from idp.keys.crypto import unseal
from idp.orgs.errors import OrgError
from idp.orgs.models import Membership
from tests import secrets_registry

ROLES = ("owner", "admin", "editor", "member")


@contextmanager
def refused(kind: type[OrgError], message: str):
    """`pytest.raises` for exactly `kind` with `message`: `pytest.raises(OrgError)` alone would
    also pass on a 404, 403 or 409 (its subclasses)."""
    with pytest.raises(kind) as caught:
        yield caught
    assert type(caught.value) is kind
    assert caught.value.message == message


async def person(s, name: str = "Maija Meikäläinen", email: str | None = None) -> tuple[str, str]:
    """A new account with a verified email: (email, user id)."""
    email = email or f"person-{secrets.token_hex(6)}@example.com"
    user = await s.db.run(lambda db: s.accounts.create_user(db, email=email, password=None, name=name))
    return email, user.id


async def organisation(s, owner_id: str, name: str = "Acme Oy"):
    handle = f"acme-{secrets.token_hex(4)}"
    return await s.db.run(lambda db: s.orgs.create(db, Actor.user(owner_id), name=name, handle=handle,
                                                   owner_id=owner_id))


async def team(s, name: str = "Acme Oy"):
    """An organisation with one person per role, and an outsider: (org, {role: user id},
    {role: email}); the outsider is under the key "outsider"."""
    ids, emails = {}, {}
    for role in (*ROLES, "outsider"):
        emails[role], ids[role] = await person(s, name=f"{role.title()} Person")
    org = await organisation(s, ids["owner"], name)
    for role in ("admin", "editor", "member"):
        await s.db.run(lambda db, role=role: s.orgs.members.add(db, Actor.operator(), org.id, ids[role], role))
    return org, ids, emails


async def roles_of(s, org_id: str) -> dict[str, str]:
    """{user id: role} of every member."""
    rows = await s.db.run(lambda db: db.execute(select(Membership.user_id, Membership.role).where(
        Membership.org_id == org_id)))
    return dict(rows.all())


async def owner_count(s, org_id: str) -> int:
    return await s.db.run(lambda db: _scalar(db, select(func.count()).select_from(Membership).where(
        Membership.org_id == org_id, Membership.role == "owner")))


async def _scalar(db, query):
    return (await db.execute(query)).scalar_one()


async def queued(s, recipient: str, kind: str) -> list[dict]:
    """The params of every message of `kind` queued for `recipient`, oldest first."""
    async def work(db):
        rows = (await db.execute(select(CourierMessage).where(
            CourierMessage.recipient == recipient, CourierMessage.kind == kind,
        ).order_by(CourierMessage.created_at))).scalars().all()
        return [json.loads(unseal(s.courier.key, row.payload, f"courier:{row.id}")) for row in rows]
    return await s.db.run(work)


async def link(s, recipient: str, kind: str) -> str:
    """The token of the newest link of `kind` sent to `recipient` (remembered as a secret)."""
    params = (await queued(s, recipient, kind))[-1]
    token = re.search(r"/(idp(?:inv|own)_[A-Za-z0-9_-]+)$", params["url"]).group(1)
    secrets_registry.remember(token)
    return token

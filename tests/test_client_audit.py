"""Client and signing-key changes are audit events, written in the change's transaction, naming
who made them and never holding a secret, a hash or key material: through the services (SQLite
and PostgreSQL) and through the `idp` command as an operator runs it."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

from sqlalchemy import select

from idp.audit.models import AuditEvent
from idp.audit.service import SYSTEM, Actor
from idp.db import utcnow
from idp.keys.models import SigningKey
from idp.oauth.clients import ClientSpec
from tests import secrets_registry
from tests.test_cli import _env, idp, ok

FAMILIES = ("RS256", "ES256", "Ed25519")


async def _events(s, *, target_ids, prefix: str, since=None) -> list[AuditEvent]:
    async def read(db):
        query = select(AuditEvent).where(AuditEvent.target_id.in_(list(target_ids)),
                                         AuditEvent.action.startswith(prefix))
        if since is not None:
            query = query.where(AuditEvent.at >= since)
        return list((await db.execute(query.order_by(AuditEvent.at, AuditEvent.id))).scalars())
    return await s.db.run(read)


def _row(event: AuditEvent) -> tuple:
    return (event.action, event.actor_type, event.actor_id, event.client_id, event.ip, event.target_type,
            event.target_id, event.before, event.after)


# ---- through the services -------------------------------------------------------------------------

async def test_client_changes_record_only_what_changed(services):
    s = services
    operator = Actor.operator("ops")
    spec = ClientSpec(name="Audited", redirect_uris=["https://audited.example/cb"], scopes=["openid"])
    client, secret = await s.db.run(lambda db: s.clients.create(db, spec, actor=operator))
    secrets_registry.remember(secret)

    async def change(changes):
        async def work(db):
            row = await s.clients.get(db, client.client_id, for_update=True)
            await s.clients.update(db, row, changes, actor=operator)
        await s.db.run(work)

    await change({"name": "Audited", "scopes": ["openid"]})  # no change: no event
    await change({"scopes": ["openid", "idp:users:read"], "first_party": True})

    async def rotate(db):
        return await s.clients.rotate_secret(db, await s.clients.get(db, client.client_id), actor=operator)

    secrets_registry.remember(await s.db.run(rotate))

    events = await _events(s, target_ids=[client.client_id], prefix="client.")
    registration = events[0].after
    assert [_row(e) for e in events] == [
        ("client.created", "operator", "ops", None, None, "client", client.client_id, None, registration),
        ("client.updated", "operator", "ops", None, None, "client", client.client_id,
         {"scopes": ["openid"], "first_party": False},
         {"scopes": ["openid", "idp:users:read"], "first_party": True}),
        ("client.secret_rotated", "operator", "ops", None, None, "client", client.client_id, None, None),
    ]
    assert registration["redirect_uris"] == ["https://audited.example/cb"] and registration["name"] == "Audited"
    assert not {"secret", "secret_hash", "client_secret"} & set(registration)
    stored = await s.db.run(lambda db: s.clients.get(db, client.client_id))
    for event in events:
        assert stored.secret_hash not in json.dumps([event.before, event.after])


async def test_a_refused_change_leaves_no_event(services):
    s = services
    client, _ = await s.db.run(lambda db: s.clients.create(db, ClientSpec(
        name="Kept", redirect_uris=["https://kept.example/cb"], public=True)))

    async def work(db):
        await s.clients.update(db, await s.clients.get(db, client.client_id),
                               {"redirect_uris": ["http://evil.example/cb"]}, actor=Actor.operator())

    try:
        await s.db.run(work)
    except Exception as exc:  # noqa: BLE001 - the exact class is checked below
        assert type(exc).__name__ == "ClientError" and "https" in str(exc)
    else:
        raise AssertionError("the change must be refused")
    events = await _events(s, target_ids=[client.client_id], prefix="client.")
    assert [(e.action, e.actor_type, e.actor_id) for e in events] == [("client.created", "operator", None)]
    assert (await s.db.run(lambda db: s.clients.get(db, client.client_id))).redirect_uris == ["https://kept.example/cb"]



async def test_an_api_caller_must_say_what_it_holds_and_gets_no_more(services):
    """An integrator's client acts with the scopes it holds (SECURITY-CHECKLIST 89); forgetting to
    pass them is a programming error, never an operator's full power. Operators may do anything."""
    import pytest

    from idp.oauth.clients import ClientForbidden

    s = services
    caller = Actor.client("idpc_some_integrator")
    spec = ClientSpec(name="Strong", grant_types=["client_credentials"], scopes=["idp:users:write"])
    with pytest.raises(ValueError, match="grantor_scopes"):
        await s.db.run(lambda db: s.clients.create(db, spec, actor=caller))
    with pytest.raises(ClientForbidden, match="not these: idp:users:write"):
        await s.db.run(lambda db: s.clients.create(db, spec, actor=caller, grantor_scopes={"idp:clients:write"}))
    with pytest.raises(ClientForbidden, match="first-party"):
        await s.db.run(lambda db: s.clients.create(db, replace(spec, scopes=[], first_party=True), actor=caller,
                                                   grantor_scopes={"idp:clients:write"}))
    client, secret = await s.db.run(lambda db: s.clients.create(db, replace(spec, first_party=True)))
    secrets_registry.remember(secret)
    for name in ("update", "delete", "rotate_secret"):
        async def work(db, name=name):
            row = await s.clients.get(db, client.client_id, for_update=True)
            extra = ({"changes": {"name": "Taken"}} if name == "update" else {})
            await getattr(s.clients, name)(db, row, actor=caller, **extra)
        with pytest.raises(ValueError, match="grantor_scopes"):
            await s.db.run(work)
    events = await _events(s, target_ids=[client.client_id], prefix="client.")
    assert [(e.action, e.actor_type) for e in events] == [("client.created", "operator")]
    assert (await s.db.run(lambda db: s.clients.get(db, client.client_id))).name == "Strong"

async def test_key_rotation_records_retired_rotated_and_created_keys(services):
    s = services

    async def keys(db):
        return {(k.alg, k.status): k.kid for k in (await db.execute(select(SigningKey).where(
            SigningKey.status.in_(("active", "next"))))).scalars()}

    before = await s.db.run(keys)
    since = utcnow()
    await s.db.run(lambda db: s.keyring.rotate(db, actor=Actor.operator("ops")))
    after = await s.db.run(keys)
    events = await _events(s, target_ids=set(before.values()) | set(after.values()), prefix="key.", since=since)
    assert [_row(e) for e in events] == [
        *[("key.retired", "operator", "ops", None, None, "signing_key", before[(f, "active")], None,
           {"kid": before[(f, "active")], "alg": f, "status": "retired"}) for f in FAMILIES],
        *[("key.rotated", "operator", "ops", None, None, "signing_key", before[(f, "next")], None,
           {"kid": before[(f, "next")], "alg": f, "status": "active"}) for f in FAMILIES],
        *[("key.created", "operator", "ops", None, None, "signing_key", after[(f, "next")], None,
           {"kid": after[(f, "next")], "alg": f, "status": "next"}) for f in FAMILIES],
    ]
    # The keys the server made at start-up were the system's.
    started = await _events(s, target_ids=[before[(f, "next")] for f in FAMILIES], prefix="key.created")
    assert {(e.actor_type, e.actor_id) for e in started} <= {(SYSTEM.type, None)}


# ---- through the `idp` command ----------------------------------------------------------------------

def _audit_rows(env: dict, prefix: str) -> list[dict]:
    path = Path(env["IDP_DATABASE_URL"].split("///", 1)[1])
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            "SELECT action, actor_type, actor_id, client_id, ip, org_id, target_type, target_id, before, after "
            "FROM audit_events WHERE action LIKE ? ORDER BY at, id", (prefix + "%",)).fetchall()
    return [dict(row) | {"before": json.loads(row["before"]) if row["before"] else None,
                         "after": json.loads(row["after"]) if row["after"] else None} for row in rows]


def test_idp_keys_rotate_writes_key_rotated_as_the_operator(tmp_path):
    env = _env(tmp_path)
    ok(idp(env, "migrate"))
    created = _audit_rows(env, "key.")
    assert sorted((r["action"], r["actor_type"], r["after"]["alg"], r["after"]["status"]) for r in created) == sorted(
        ("key.created", "system", f, status) for f in FAMILIES for status in ("active", "next"))

    listed = json.loads(ok(idp(env, "keys", "list", "--json")).stdout)
    upcoming = {k["alg"]: k["kid"] for k in listed if k["status"] == "next"}
    ok(idp(env, "keys", "rotate"))
    rotated = [r for r in _audit_rows(env, "key.rotated")]
    assert rotated == [
        {"action": "key.rotated", "actor_type": "operator", "actor_id": None, "client_id": None, "ip": None,
         "org_id": None, "target_type": "signing_key", "target_id": upcoming[f], "before": None,
         "after": {"kid": upcoming[f], "alg": f, "status": "active"}} for f in FAMILIES]
    everything = json.dumps(_audit_rows(env, "key."))
    assert "PRIVATE" not in everything and '"d"' not in everything and "private_key" not in everything


def test_idp_clients_changes_are_audited_as_the_operator(tmp_path):
    env = _env(tmp_path)
    ok(idp(env, "migrate"))
    shown = json.loads(ok(idp(env, "clients", "add", "--name", "Sync", "--grant-type", "client_credentials",
                              "--scope", "idp:audit:read", "--json")).stdout)
    rotated = json.loads(ok(idp(env, "clients", "rotate-secret", shown["client_id"], "--json")).stdout)
    ok(idp(env, "clients", "delete", shown["client_id"]))
    rows = _audit_rows(env, "client.")
    registration = {k: v for k, v in shown.items() if k != "client_secret"}
    common = {"actor_type": "operator", "actor_id": None, "client_id": None, "ip": None, "org_id": None,
              "target_type": "client", "target_id": shown["client_id"]}
    assert rows == [
        common | {"action": "client.created", "before": None, "after": registration},
        common | {"action": "client.secret_rotated", "before": None, "after": None},
        common | {"action": "client.deleted", "before": registration, "after": None},
    ]
    assert rotated["client_id"] == shown["client_id"]
    for secret in (shown["client_secret"], rotated["client_secret"]):
        assert secret not in json.dumps(rows)

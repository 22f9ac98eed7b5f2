"""Products and product access over /api/v1 with client-credentials tokens: creating, reading and
attaching clients (platform clients only), granting, changing and revoking licences through the
same service and checks as the pages, idempotent creation under 10 parallel retries, audit events
naming the client, and organisation-bound clients kept to their own organisation."""

from __future__ import annotations

import asyncio
import secrets

from sqlalchemy import func, select

from idp.orgs.models import Product, ProductAccess
from tests.api_support import assert_problem, integrator
from tests.org_support import team
from tests.test_org_sign_in import add_member, new_org, sign_in

ROLES = ["owner", "admin", "editor", "viewer"]


def a_handle() -> str:
    return f"p-{secrets.token_hex(4)}"


async def create_product(http, caller, handle=None, roles=ROLES, **extra):
    body = {"handle": handle or a_handle(), "name": "Web shop", "roles": roles, **extra}
    reply = await http.post("/api/v1/products", json=body, headers=caller.key())
    assert reply.status_code == 201, reply.text
    return reply.json()


async def events(services, action: str, target_id: str):
    found = await services.db.run(lambda db: services.audit.events(db, action=action, limit=500))
    return [event for event in found if event.target_id == target_id]


# ---- products -------------------------------------------------------------------------------------

async def test_create_read_list_attach_and_detach_a_product(http, rp, services):
    caller = await integrator(http, rp)
    web = await rp.register()
    handle = a_handle()
    reply = await http.post("/api/v1/products", headers=caller.key(), json={
        "handle": handle, "name": "Web shop", "roles": ROLES, "clients": [web.client_id]})
    assert reply.status_code == 201, reply.text
    product = reply.json()
    assert reply.headers["location"] == f"/api/v1/products/{product['id']}"
    assert product | {"id": None, "created_at": None} == {
        "id": None, "created_at": None, "handle": handle, "name": "Web shop", "roles": ROLES,
        "clients": [web.client_id]}

    by_id = await http.get(f"/api/v1/products/{product['id']}", headers=caller.headers)
    by_handle = await http.get(f"/api/v1/products/{handle}", headers=caller.headers)
    assert by_id.status_code == by_handle.status_code == 200
    assert by_id.json() == by_handle.json() == product
    assert by_id.headers["etag"] == by_handle.headers["etag"]
    listed = await http.get("/api/v1/products", params={"handle": handle}, headers=caller.headers)
    assert listed.json() == {"items": [product], "next_cursor": None}

    app_client = await rp.register()
    attached = await http.put(f"/api/v1/products/{handle}/clients/{app_client.client_id}", headers=caller.headers)
    assert attached.status_code == 200, attached.text
    assert attached.json()["clients"] == sorted([web.client_id, app_client.client_id])
    assert attached.headers["etag"] != by_id.headers["etag"]

    assert (await http.delete(f"/api/v1/products/{handle}/clients/{web.client_id}",
                              headers=caller.headers)).status_code == 204
    assert_problem(await http.delete(f"/api/v1/products/{handle}/clients/{web.client_id}",
                                     headers=caller.headers), 404, "not-found")
    after = await http.get(f"/api/v1/products/{handle}", headers=caller.headers)
    assert after.json()["clients"] == [app_client.client_id]
    assert (await services.db.run(lambda db: services.clients.get(db, web.client_id))).product_id is None

    # Written by the services with the client as the actor.
    created = (await events(services, "product.created", product["id"]))[0]
    assert (created.actor_type, created.actor_id, created.client_id) == ("client", caller.client_id, caller.client_id)
    detached = (await events(services, "product.client_detached", web.client_id))[0]
    assert detached.client_id == caller.client_id and detached.before == {"product": product["id"]}


async def test_products_page_with_a_cursor(http, rp):
    caller = await integrator(http, rp, scopes=["idp:products:read", "idp:products:write"])
    made = [(await create_product(http, caller))["id"] for _ in range(3)]
    seen, cursor = [], None
    while True:
        reply = await http.get("/api/v1/products", params={"limit": 2} | ({"cursor": cursor} if cursor else {}),
                               headers=caller.headers)
        assert reply.status_code == 200 and len(reply.json()["items"]) <= 2
        seen += [item["id"] for item in reply.json()["items"]]
        if (cursor := reply.json()["next_cursor"]) is None:
            break
    assert seen[-3:] == made and len(seen) == len(set(seen))


async def test_refused_products(http, rp):
    caller = await integrator(http, rp)
    taken = await create_product(http, caller)
    body = assert_problem(await http.post("/api/v1/products", headers=caller.key(), json={
        "handle": taken["handle"], "name": "Again", "roles": ["user"]}), 409, "conflict")
    assert body["detail"] == "this product handle is taken"
    assert_problem(await http.post("/api/v1/products", headers=caller.key(), json={
        "handle": a_handle(), "name": "Dupes", "roles": ["user", "user"]}), 400, "invalid-request")
    for bad in ({"handle": "Bad Handle", "name": "x", "roles": ["user"]},
                {"handle": a_handle(), "name": "x", "roles": []},
                {"handle": a_handle(), "name": "x", "roles": ["Not A Role"]},
                {"handle": a_handle(), "name": "x\x00", "roles": ["user"]},
                {"handle": a_handle(), "name": "x", "roles": ["user"], "surprise": 1}):
        assert_problem(await http.post("/api/v1/products", headers=caller.key(), json=bad), 422, "validation-error")
    body = assert_problem(await http.post("/api/v1/products", headers=caller.key(), json={
        "handle": a_handle(), "name": "x", "roles": ["user"], "clients": ["no-such-client"]}), 404, "not-found")
    assert body["detail"] == "no such client"
    assert_problem(await http.get("/api/v1/products/no-such-product", headers=caller.headers), 404, "not-found")
    reader = await integrator(http, rp, scopes=["idp:products:read"])
    body = assert_problem(await http.post("/api/v1/products", headers=reader.key(), json={
        "handle": a_handle(), "name": "x", "roles": ["user"]}), 403, "insufficient-scope")
    assert body["missing_scope"] == "idp:products:write"


async def test_the_same_idempotency_key_ten_times_in_parallel_makes_one_product(http, rp, services):
    caller = await integrator(http, rp)
    handle = a_handle()
    headers = caller.key()
    body = {"handle": handle, "name": "Once", "roles": ["user"]}
    replies = await asyncio.gather(*[http.post("/api/v1/products", json=body, headers=headers) for _ in range(10)])
    assert [reply.status_code for reply in replies] == [201] * 10, [r.text for r in replies]
    assert len({reply.json()["id"] for reply in replies}) == 1
    assert sum(reply.headers.get("idempotent-replayed") == "true" for reply in replies) == 9
    count = await services.db.run(lambda db: db.scalar(select(func.count()).select_from(Product).where(
        Product.handle == handle)))
    assert count == 1
    assert len(await events(services, "product.created", replies[0].json()["id"])) == 1
    # A sequential retry gets the first response too; the same key with another body is refused.
    again = await http.post("/api/v1/products", json=body, headers=headers)
    assert again.status_code == 201 and again.json() == replies[0].json()
    assert_problem(await http.post("/api/v1/products", json=body | {"name": "Other"}, headers=headers),
                   422, "idempotency-key-reused")


async def test_an_organisation_bound_client_reads_products_but_cannot_make_or_attach(http, rp, services):
    org, _, _ = await team(services)
    platform = await integrator(http, rp)
    web = await rp.register()
    product = await create_product(http, platform, clients=[web.client_id])
    assert product["clients"] == [web.client_id]
    bound = await integrator(http, rp, org=org.handle)
    # It reads every product, but not which clients the platform gave them.
    seen = product | {"clients": []}
    listed = await http.get("/api/v1/products", params={"handle": product["handle"]}, headers=bound.headers)
    assert listed.status_code == 200 and listed.json()["items"] == [seen]
    everything = await http.get("/api/v1/products", params={"limit": 200}, headers=bound.headers)
    assert everything.status_code == 200
    assert all(item["clients"] == [] for item in everything.json()["items"])
    got = await http.get(f"/api/v1/products/{product['id']}", headers=bound.headers)
    assert got.status_code == 200 and got.json() == seen
    assert web.client_id not in listed.text + everything.text + got.text
    # The platform still sees them, and nothing changed.
    assert (await http.get(f"/api/v1/products/{product['id']}", headers=platform.headers)).json() == product
    assert_problem(await http.post("/api/v1/products", headers=bound.key(), json={
        "handle": a_handle(), "name": "Mine", "roles": ["user"]}), 404, "not-found")
    assert_problem(await http.put(f"/api/v1/products/{product['id']}/clients/{bound.client_id}",
                                  headers=bound.headers), 404, "not-found")
    assert_problem(await http.delete(f"/api/v1/products/{product['id']}/clients/{bound.client_id}",
                                     headers=bound.headers), 404, "not-found")


# ---- product access -------------------------------------------------------------------------------

async def test_product_access_granted_changed_and_revoked(http, rp, services):
    org, ids, _ = await team(services)
    caller = await integrator(http, rp)
    product = await create_product(http, caller)
    member = ids["member"]
    path = f"/api/v1/organisations/{org.handle}/members/{member}/products/{product['handle']}"

    granted = await http.put(path, json={"role": "viewer"}, headers=caller.headers)
    assert granted.status_code == 200, granted.text
    assert granted.json() | {"granted_at": None} == {
        "user_id": member, "product_id": product["id"], "product_handle": product["handle"],
        "role": "viewer", "granted_at": None}
    changed = await http.put(path, json={"role": "editor"}, headers=caller.headers)
    assert changed.status_code == 200 and changed.json()["role"] == "editor"
    assert changed.json()["granted_at"] == granted.json()["granted_at"]
    await http.put(f"/api/v1/organisations/{org.id}/members/{ids['admin']}/products/{product['id']}",
                   json={"role": "admin"}, headers=caller.headers)

    listing = f"/api/v1/organisations/{org.id}/product-access"
    mine = await http.get(listing, params={"user_id": member}, headers=caller.headers)
    assert mine.status_code == 200
    assert [(a["user_id"], a["role"]) for a in mine.json()["items"]] == [(member, "editor")]
    everyone = await http.get(listing, params={"product": product["handle"]}, headers=caller.headers)
    assert {a["user_id"]: a["role"] for a in everyone.json()["items"]} == {member: "editor", ids["admin"]: "admin"}
    first = await http.get(listing, params={"limit": 1}, headers=caller.headers)
    second = await http.get(listing, params={"limit": 1, "cursor": first.json()["next_cursor"]},
                            headers=caller.headers)
    assert [a["user_id"] for a in first.json()["items"] + second.json()["items"]] == [member, ids["admin"]]
    assert second.json()["next_cursor"] is None

    grant_events = await services.db.run(lambda db: services.audit.events(
        db, org_id=org.id, action="product.access_granted"))
    last = [e for e in grant_events if e.target_id == member][0]
    assert (last.actor_type, last.client_id, last.org_id) == ("client", caller.client_id, org.id)
    assert (last.before, last.after) == ({"role": "viewer"}, {"product": product["id"], "role": "editor"})

    assert (await http.delete(path, headers=caller.headers)).status_code == 204
    body = assert_problem(await http.delete(path, headers=caller.headers), 404, "not-found")
    assert body["detail"] == "this person has no access to the product"
    assert (await http.get(listing, params={"user_id": member}, headers=caller.headers)).json()["items"] == []
    revoked = await services.db.run(lambda db: services.audit.events(db, org_id=org.id,
                                                                      action="product.access_revoked"))
    assert revoked[0].client_id == caller.client_id
    assert revoked[0].before == {"product": product["id"], "role": "editor"}


async def test_access_granted_through_the_api_is_in_the_member_s_next_tokens(http, rp, services):
    caller = await integrator(http, rp)
    email, user_id = await rp.user()
    org = await new_org(services, (await rp.user())[1])
    await add_member(services, org.id, user_id, "editor")
    client = await rp.register(scopes=["openid", "profile", "email", "organization", "offline_access"])
    product = await create_product(http, caller, clients=[client.client_id])
    path = f"/api/v1/organisations/{org.id}/members/{user_id}/products/{product['id']}"
    for role in ("viewer", "admin"):
        assert (await http.put(path, json={"role": role}, headers=caller.headers)).status_code == 200
        async with rp.browser() as browser:
            tokens = await sign_in(browser, rp, client, email, organization=org.handle)
        assert (tokens["at"]["roles"], tokens["id"]["roles"]) == ([role], [role])


async def test_product_access_refusals_say_why_and_change_nothing(http, rp, services):
    org, ids, _ = await team(services)
    caller = await integrator(http, rp)
    product = await create_product(http, caller, roles=["owner", "admin"])
    base = f"/api/v1/organisations/{org.id}"
    body = assert_problem(await http.put(f"{base}/members/{ids['outsider']}/products/{product['id']}",
                                         json={"role": "admin"}, headers=caller.headers), 400, "invalid-request")
    assert body["detail"] == "the person is not a member of this organisation"
    body = assert_problem(await http.put(f"{base}/members/{ids['member']}/products/{product['id']}",
                                         json={"role": "viewer"}, headers=caller.headers), 400, "invalid-request")
    assert body["detail"] == "the role is not one of the product's roles"
    assert_problem(await http.put(f"{base}/members/{ids['member']}/products/no-such-product",
                                  json={"role": "admin"}, headers=caller.headers), 404, "not-found")
    assert_problem(await http.put(f"{base}/members/{ids['member']}/products/{product['id']}",
                                  json={"role": "Admin!"}, headers=caller.headers), 422, "validation-error")
    assert_problem(await http.get(f"{base}/product-access", params={"product": "no-such-product"},
                                  headers=caller.headers), 404, "not-found")
    assert_problem(await http.get("/api/v1/organisations/no-such-org/product-access", headers=caller.headers),
                   404, "not-found")
    reader = await integrator(http, rp, scopes=["idp:products:read"])
    body = assert_problem(await http.put(f"{base}/members/{ids['member']}/products/{product['id']}",
                                         json={"role": "admin"}, headers=reader.headers), 403, "insufficient-scope")
    assert body["missing_scope"] == "idp:products:write"
    count = await services.db.run(lambda db: db.scalar(select(func.count()).select_from(ProductAccess).where(
        ProductAccess.org_id == org.id)))
    assert count == 0


async def test_an_organisation_bound_client_manages_its_own_organisations_access(http, rp, services):
    org, ids, _ = await team(services)
    product = await create_product(http, await integrator(http, rp))
    bound = await integrator(http, rp, org=org.handle)
    path = f"/api/v1/organisations/{org.handle}/members/{ids['editor']}/products/{product['id']}"
    granted = await http.put(path, json={"role": "editor"}, headers=bound.headers)
    assert granted.status_code == 200, granted.text
    listed = await http.get(f"/api/v1/organisations/{org.id}/product-access", headers=bound.headers)
    assert [a["user_id"] for a in listed.json()["items"]] == [ids["editor"]]
    event = (await services.db.run(lambda db: services.audit.events(
        db, org_id=org.id, action="product.access_granted")))[0]
    assert (event.actor_type, event.client_id) == ("client", bound.client_id)


async def test_an_organisation_bound_client_gets_404_for_another_organisations_access(http, rp, services):
    mine, _, _ = await team(services)
    other, other_ids, _ = await team(services, "Other Oy")
    product = await create_product(http, await integrator(http, rp))
    bound = await integrator(http, rp, org=mine.handle)
    assert_problem(await http.get(f"/api/v1/organisations/{other.id}/product-access", headers=bound.headers),
                   404, "not-found")
    assert_problem(await http.put(f"/api/v1/organisations/{other.handle}/members/{other_ids['member']}"
                                  f"/products/{product['id']}", json={"role": "viewer"}, headers=bound.headers),
                   404, "not-found")
    count = await services.db.run(lambda db: db.scalar(select(func.count()).select_from(ProductAccess).where(
        ProductAccess.org_id == other.id)))
    assert count == 0

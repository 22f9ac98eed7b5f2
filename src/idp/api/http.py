"""The API's HTTP conventions, in one place: problem+json for every refusal (ApiRoute), ETags on
reads and If-Match on updates, and Idempotency-Key on POSTs (`write`)."""

from __future__ import annotations

import base64
import logging
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from idp.api.auth import ApiCaller
from idp.api.models import IdempotencyRecord
from idp.api.problems import Problem, to_problem
from idp.db import utcnow
from idp.keys.crypto import seal, unseal

log = logging.getLogger("idp.api")
IDEMPOTENCY_TTL = timedelta(hours=24)
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces


class ApiRoute(APIRoute):
    """Turns every domain refusal (and FastAPI's own validation errors) into problem+json. An
    exception with no problem behind it is a bug and stays a 500."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - mapped, or re-raised untouched
                problem = to_problem(exc)
                if problem is None:
                    raise
                return problem.response()

        return handle


# ---- representations and ETags ---------------------------------------------------------------

def body_of(model: BaseModel | dict | list | None):
    return model.model_dump(mode="json") if isinstance(model, BaseModel) else model


def etag_of(model: BaseModel | dict) -> str:
    """A strong ETag: a digest of the representation, so no version column is needed."""
    canonical = json.dumps(body_of(model), sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


def read(model: BaseModel, status: int = 200) -> JSONResponse:
    """A single resource, with its ETag."""
    return JSONResponse(body_of(model), status_code=status,
                        headers={"ETag": etag_of(model), "Cache-Control": "no-store"})


def check_if_match(request: Request, current: BaseModel | dict) -> None:
    """RFC 9110 §13.1.1: a stale If-Match is 412 and the change is not made. Strong comparison:
    a weak tag never matches. No header: the client takes the risk of a lost update."""
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return
    tags = [tag.strip() for tag in header.split(",")]
    if etag_of(current) not in tags:
        raise Problem("precondition-failed", "read the resource again and retry with its ETag")


# ---- writes --------------------------------------------------------------------------------

@dataclass
class Written:
    """What a write made: the representation, the status and where the new resource lives."""

    body: BaseModel | dict | list | None
    status: int = 200
    location: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


Work = Callable[[AsyncSession], Awaitable[Written]]


async def write(request: Request, caller: ApiCaller, work: Work) -> Response:
    """Run `work` in one transaction. On a POST with an `Idempotency-Key`, the key is claimed in
    that same transaction: the first request's response is stored with its change, and a retry —
    or a parallel twin, which waits on the key's primary key until the first commits — gets that
    response again, never a second resource. A refused request stores nothing: retrying it runs
    it again."""
    services = request.app.state.services
    key = request.headers.get("idempotency-key") if request.method == "POST" else None
    if key is not None and not _KEY.match(key):
        raise Problem("invalid-request", "Idempotency-Key must be 1–255 printable ASCII characters")
    fingerprint = hashlib.sha256(b"\n".join([
        request.method.encode(), request.url.path.encode(), request.url.query.encode(),
        await request.body()])).hexdigest()

    async def unit(db: AsyncSession) -> tuple[Written, bool]:
        if key is not None:
            earlier = await _claim(db, caller.client_id, key, fingerprint, services.idempotency_key)
            if earlier is not None:
                return earlier, True
        written = await work(db)
        if key is not None:
            record = await db.get(IdempotencyRecord, (caller.client_id, key))
            record.status = written.status
            record.body = _seal(services.idempotency_key, record, body_of(written.body))
            record.headers = _headers(written)
        return written, False

    written, replayed = await services.db.run(unit)
    headers = _headers(written)
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    if written.body is None:
        return Response(status_code=written.status, headers=headers)
    return JSONResponse(body_of(written.body), status_code=written.status, headers=headers)


async def purge_expired(db: AsyncSession, now: datetime) -> int:
    """Delete the Idempotency-Key records that have expired (a retry after that runs again); the
    number deleted. Run by the housekeeping loop (events/delivery.py, DeliveryWorker.housekeep)."""
    done = await db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now)
                            .execution_options(synchronize_session=False))
    return done.rowcount


def _seal(key: bytes, record: IdempotencyRecord, body) -> dict:
    """The stored response, sealed: a creation reply may carry a secret shown once (a new client's
    or webhook's), and a replay must be able to show it again — but the table must not."""
    sealed = seal(key, json.dumps(body).encode(), f"idempotency:{record.client_id}:{record.key}")
    return {"sealed": base64.b64encode(sealed).decode()}


def _unseal(key: bytes, record: IdempotencyRecord):
    sealed = base64.b64decode(record.body["sealed"])
    return json.loads(unseal(key, sealed, f"idempotency:{record.client_id}:{record.key}"))


def _headers(written: Written) -> dict[str, str]:
    headers = {"Cache-Control": "no-store", **written.headers}
    if written.location:
        headers["Location"] = written.location
    if isinstance(written.body, (BaseModel, dict)) and written.body and "ETag" not in headers:
        headers["ETag"] = etag_of(written.body)
    return headers


async def _claim(db: AsyncSession, client_id: str, key: str, fingerprint: str,
                 seal_key: bytes) -> Written | None:
    """Take the key (None: go ahead) or return the stored response of the request that took it."""
    now = utcnow()
    for _ in range(2):
        try:
            async with db.begin_nested():
                db.add(IdempotencyRecord(client_id=client_id, key=key, fingerprint=fingerprint, status=0,
                                         body=None, headers={}, created_at=now,
                                         expires_at=now + IDEMPOTENCY_TTL))
                await db.flush()
            return None
        except IntegrityError:
            pass
        record = await db.get(IdempotencyRecord, (client_id, key), populate_existing=True)
        if record is None:
            continue  # the holder rolled back between our insert and our read: take it now
        if record.expires_at <= now:
            await db.delete(record)
            await db.flush()
            continue
        if record.fingerprint != fingerprint:
            raise Problem("idempotency-key-reused", "this Idempotency-Key was sent with another request")
        try:
            body = _unseal(seal_key, record)
        except InvalidTag:
            # Sealed under a key-encryption key that has since been replaced: the stored reply is
            # unreadable, so the key is treated as expired and the request runs again.
            log.warning("an idempotency record could not be unsealed (KEK changed?); running the request again")
            await db.delete(record)
            await db.flush()
            continue
        headers = dict(record.headers or {})
        location = headers.pop("Location", None)
        return Written(body, record.status, location, headers)
    raise Problem("idempotency-key-in-use", "retry in a moment")

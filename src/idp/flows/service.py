"""The login interaction: a state machine persisted in `authorization_flows`.

    [authorize] ──needs login──▶ LOGIN ──password ok──▶ CONSENT ──allow──▶ COMPLETE
         │                         │                      └──deny──▶ DENIED
         └──needs consent──────────┼────────────▶ CONSENT
                                   └──no consent needed──▶ COMPLETE

Each transition starts with a guard on the current state; a spent or expired flow is refused.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import User
from idp.db import utcnow
from idp.flows.models import AuthorizationFlow, FlowState
from idp.oauth.authorization import ACR_PASSWORD, AuthorizationRequest, Interaction, Redirect

if TYPE_CHECKING:
    from idp.services import Services


_FLOW_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the alphabet of db.new_id()


class FlowError(Exception):
    """The flow is unknown, expired or not in the state this step needs."""


class LoginFailed(Exception):
    """Wrong login or password (the same answer whether or not the account exists)."""


@dataclass
class LoginResult:
    outcome: Redirect | Interaction
    session_cookie: str


@dataclass
class FlowView:
    """What a page needs to show a step."""

    flow: AuthorizationFlow
    request: AuthorizationRequest
    client_name: str


class FlowService:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def load(self, db: AsyncSession, flow_id: str | None, state: FlowState,
                   *, lock: bool = False) -> FlowView:
        if not isinstance(flow_id, str) or not _FLOW_ID.fullmatch(flow_id):
            raise FlowError("unknown flow")
        query = select(AuthorizationFlow).where(AuthorizationFlow.id == flow_id)
        if lock:
            query = query.with_for_update()
        flow = (await db.execute(query)).scalar_one_or_none()
        if flow is None or flow.expires_at <= utcnow():
            raise FlowError("this sign-in link has expired; start again from the application")
        if flow.state != state:
            raise FlowError("this step is already done; start again from the application")
        client = await self.s.clients.get(db, flow.client_id) if flow.client_id else None
        return FlowView(flow, AuthorizationRequest(**flow.request), client.name if client else "")

    async def start_account_flow(self, db: AsyncSession, *, return_to: str, max_age: int | None = None,
                                 ui_locales: str | None = None) -> str:
        """A sign-in for our own pages (no client): the browser goes to `/login?flow=<id>` and,
        once signed in, is sent to `return_to` (a path on this server)."""
        if not return_to.startswith("/") or return_to.startswith("//"):
            raise ValueError("return_to must be a local path")
        request = AuthorizationRequest(client_id="", redirect_uri=return_to, redirect_uri_sent=False,
                                       scopes=[], max_age=max_age, ui_locales=ui_locales)
        flow = AuthorizationFlow(
            client_id=None, request=asdict(request), state=FlowState.LOGIN, data={},
            expires_at=utcnow() + timedelta(seconds=self.s.settings.flow_ttl),
        )
        db.add(flow)
        await db.flush()
        return flow.id

    async def sign_in(self, db: AsyncSession, flow_id: str | None, user: User, *, amr: list[str],
                      previous_cookie: str | None = None, user_agent: str | None = None) -> LoginResult:
        """Sign `user` in on a flow still at LOGIN, authenticated by `amr` (e.g. a registration
        that just confirmed its code): a new session, then consent, a code or the return page."""
        view = await self.load(db, flow_id, FlowState.LOGIN, lock=True)
        return await self._start_session(db, view, user, amr, previous_cookie, user_agent)

    async def submit_password(self, db: AsyncSession, flow_id: str | None, login: str,
                              password: str, previous_cookie: str | None = None) -> LoginResult:
        view = await self.load(db, flow_id, FlowState.LOGIN, lock=True)
        # No email holds a NUL, and PostgreSQL text cannot: look up nothing, but still spend the
        # hash, so the answer and its timing are those of any unknown login.
        user = await self.s.accounts.authenticate_password(db, "" if "\x00" in login else login, password)
        if user is None:
            raise LoginFailed()
        return await self._start_session(db, view, user, ["pwd"], previous_cookie, None)

    async def _start_session(self, db: AsyncSession, view: FlowView, user: User, amr: list[str],
                             previous_cookie: str | None, user_agent: str | None) -> LoginResult:
        # A new session at every login (no fixation), and the one it replaces ends (ASVS 7.2.4).
        previous = await self.s.sessions.from_cookie(db, previous_cookie)
        if previous is not None:
            await self.s.sessions.end(db, previous.id)
        session, cookie = await self.s.sessions.start(db, user_id=user.id, amr=amr, acr=ACR_PASSWORD,
                                                      user_agent=user_agent)
        view.flow.user_id, view.flow.session_id = user.id, session.id
        if view.flow.client_id is None:
            view.flow.state = FlowState.COMPLETE
            return LoginResult(Redirect(view.request.redirect_uri), cookie)
        client = await self.s.clients.get(db, view.flow.client_id)
        outcome = await self.s.authorization.after_authentication(db, view.request, client, session, view.flow)
        return LoginResult(outcome, cookie)

    async def submit_consent(self, db: AsyncSession, flow_id: str | None, allow: bool,
                             current_session_id: str | None) -> Redirect:
        view = await self.load(db, flow_id, FlowState.CONSENT, lock=True)
        session = await self.s.sessions.get(db, view.flow.session_id or "")
        # Consent is given by the browser that signed in, in a session still alive.
        if session is None or session.ended_at is not None or session.id != current_session_id:
            raise FlowError("your session has ended; start again from the application")
        return await self.s.authorization.after_consent(db, view.request, view.flow, session, allow)

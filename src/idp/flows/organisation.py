"""The organisation step of a sign-in: after authentication, before consent.

It applies when the client asks for scope `organization` or belongs to a product:

    authenticated ──▶ organisation named (`organization=` id or handle)? ── not a member ──▶ access_denied
         │                 (the same answer for an unknown organisation)
         ▼
    candidates: every membership (scope `organization`), or, for a product's client without that
    scope, the memberships holding the product's licence
         │  none ──▶ no organisation (a product's client: the "no access" page)
         │  one  ──▶ chosen silently (unless prompt=select_account)
         │  more ──▶ ORGANISATION (the chooser page) ──choice──┐
         ▼                                                     ▼
    the organisation's sign-in policy (orgs/policy.py) for this session:
         refused (e.g. phone + SMS code alone) ──▶ LOGIN again, password only
         older than max_age                    ──▶ LOGIN again
         no second factor the policy accepts   ──▶ SECOND_FACTOR (only the allowed factors;
                                                 judged on the session's methods by name)
         no licence for the client's product   ──▶ NO_ACCESS (a page, then access_denied)
         ▼
    consent | code (the code and then the grant carry the organisation)

The choice lives in the flow's data ("org", and "org_user": whom it was made for), so a second
pass after the new sign-in or the second factor keeps it. With prompt=none every interaction
becomes an error to the client (account_selection_required, login_required,
interaction_required, access_denied).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from idp.flows.models import AuthorizationFlow, FlowState
from idp.oauth.authorization import AuthorizationRequest, Interaction, Redirect
from idp.oauth.errors import AccessDenied, AccountSelectionRequired, InteractionRequired, LoginRequired
from idp.oauth.models import Client
from idp.orgs import claims
from idp.orgs.models import Organisation
from idp.sessions.models import BrowserSession

if TYPE_CHECKING:
    from idp.flows.service import Browser, LoginResult
    from idp.services import Services


@dataclass
class OrgDecision:
    """The organisation step is done: `org_id` (None: no organisation) goes on the code."""

    org_id: str | None
    flow: AuthorizationFlow | None


class OrganisationStep:
    def __init__(self, services: Services) -> None:
        self.s = services

    @staticmethod
    def applies(request: AuthorizationRequest, client: Client) -> bool:
        return claims.ORG_SCOPE in request.scopes or client.product_id is not None

    async def decide(self, db: AsyncSession, request: AuthorizationRequest, client: Client,
                     session: BrowserSession, flow: AuthorizationFlow | None,
                     browser: Browser | None) -> OrgDecision | Redirect | Interaction:
        silent = "none" in request.prompt
        data = (flow.data or {}) if flow is not None else {}
        user_id = session.user_id
        if "org" in data and data.get("org_user") == user_id:
            org = await self.s.orgs.find(db, data["org"]) if data["org"] else None
            if data["org"] and org is None:  # deleted meanwhile
                return self._deny(request, flow)
        elif request.organization is not None:
            org = await self.s.orgs.find(db, request.organization)
            if org is None or await self.s.orgs.membership(db, org.id, user_id) is None:
                return self._deny(request, flow)
        else:
            candidates = await self._candidates(db, request, client, user_id)
            if len(candidates) > 1 or (candidates and "select_account" in request.prompt):
                if silent:
                    return self._to_client(request, flow, AccountSelectionRequired(
                        "the user must choose an organisation"))
                flow = await self._flow(db, request, session, flow, browser, FlowState.ORGANISATION)
                flow.data = {**flow.data, "org_choices": [org.id for org in candidates]}
                return Interaction(flow.id, FlowState.ORGANISATION)
            if not candidates and client.product_id is not None:
                return await self._no_access(db, request, client, session, flow, browser, None, "product")
            org = candidates[0] if candidates else None
        if flow is not None:
            flow.data = {**(flow.data or {}), "org": org.id if org else None, "org_user": user_id}
        if org is None:
            return OrgDecision(None, flow)
        return await self._check(db, request, client, session, flow, browser, org)

    async def _check(self, db: AsyncSession, request: AuthorizationRequest, client: Client,
                     session: BrowserSession, flow: AuthorizationFlow | None, browser: Browser | None,
                     org: Organisation) -> OrgDecision | Redirect | Interaction:
        """The chosen organisation's policy and the client's product licence."""
        silent = "none" in request.prompt
        found = await claims.standing(self.s, db, org=org, user_id=session.user_id,
                                      product_id=client.product_id, amr=session.amr)
        if found is None:  # left or removed while signing in
            return self._deny(request, flow)
        # The policy on the session's methods by name, not only its amr: "mfa" from a password
        # and an emailed code is no second factor for a policy that accepts only an app's code.
        requirements = self.s.org_policies.requirements_of(org, session)
        problem = requirements.problem(session.auth_time)
        if problem in ("refused", "max_age"):
            if silent:
                return self._to_client(request, flow, LoginRequired("the organisation requires a new sign-in"))
            if flow is not None and (flow.data or {}).get("org_reauth"):
                # Signed in again on this flow and still not enough: do not loop.
                return await self._no_access(db, request, client, session, flow, browser, org, "policy")
            flow = await self._flow(db, request, session, flow, browser, FlowState.LOGIN)
            flow.data = {**flow.data, "org": org.id, "org_user": session.user_id, "org_reauth": True,
                         "password_only": problem == "refused", "done": []}
            return Interaction(flow.id, FlowState.LOGIN)
        if problem == "second_factor":
            if silent:
                return self._to_client(request, flow, InteractionRequired("the organisation requires a second factor"))
            allowed = tuple(requirements.allowed_factors or ())
            flow = await self._flow(db, request, session, flow, browser, FlowState.SECOND_FACTOR)
            flow.data = {**flow.data, "org": org.id, "org_user": session.user_id}
            step = await self.s.flows.start_step_up(db, request, session, browser, flow=flow,
                                                    allowed=allowed or None)
            if step is None:  # the account has none of the factors the organisation allows
                return await self._no_access(db, request, client, session, flow, browser, org, "second_factor")
            return step
        if not found.has_access:
            return await self._no_access(db, request, client, session, flow, browser, org, "product")
        return OrgDecision(org.id, flow)

    async def _candidates(self, db: AsyncSession, request: AuthorizationRequest, client: Client,
                          user_id: str) -> list[Organisation]:
        orgs = [org for org, _ in await self.s.orgs.memberships_of(db, user_id)]
        if client.product_id is not None and claims.ORG_SCOPE not in request.scopes:
            # A product's client that did not ask for the organisation: only those that give
            # access can be meant; with exactly one it is taken without asking.
            orgs = [org for org in orgs
                    if await self.s.products.access_of(db, org.id, user_id, client.product_id)]
        return orgs

    async def choose(self, db: AsyncSession, flow_id: str | None, org_id: str | None,
                     browser: Browser) -> LoginResult:
        """ORGANISATION → the chosen organisation's policy and licence, then consent or the code.
        The choice is made by the browser that signed in, in a session still alive."""
        from idp.flows.service import FlowError, LoginResult

        view = await self.s.flows.load(db, flow_id, FlowState.ORGANISATION, browser=browser.cookie, lock=True)
        session = await self.s.sessions.from_cookie(db, browser.previous_cookie)
        if session is None or session.id != view.flow.session_id:
            raise FlowError("your session has ended; start again from the application")
        if org_id not in (view.data.get("org_choices") or []):
            raise FlowError("choose one of the organisations shown")
        view.flow.data = {**view.data, "org": org_id, "org_user": session.user_id}
        client = await self.s.clients.get(db, view.flow.client_id)
        return LoginResult(await self.s.authorization.after_authentication(
            db, view.request, client, session, view.flow, browser))

    async def choices(self, db: AsyncSession, flow: AuthorizationFlow) -> list[Organisation]:
        """The organisations the chooser page offers (those that still exist)."""
        found = [await self.s.orgs.find(db, org_id) for org_id in (flow.data or {}).get("org_choices") or []]
        return sorted((org for org in found if org is not None), key=lambda org: (org.name.casefold(), org.id))

    # ---- outcomes -------------------------------------------------------------------------------

    def _to_client(self, request: AuthorizationRequest, flow: AuthorizationFlow | None, error) -> Redirect:
        if flow is not None:
            flow.state = FlowState.DENIED
        return Redirect(self.s.authorization.error_location(request, error))

    def _deny(self, request: AuthorizationRequest, flow: AuthorizationFlow | None) -> Redirect:
        # One answer whether the organisation is unknown or the person is not in it.
        return self._to_client(request, flow, AccessDenied("the user may not sign in to this organisation"))

    async def _no_access(self, db: AsyncSession, request: AuthorizationRequest, client: Client,
                         session: BrowserSession, flow: AuthorizationFlow | None, browser: Browser | None,
                         org: Organisation | None, reason: str) -> Redirect | Interaction:
        """A page saying why (with the organisation's name), whose link sends access_denied to
        the client; with prompt=none, access_denied at once."""
        if "none" in request.prompt:
            return self._deny(request, flow)
        product = await self.s.products.get(db, client.product_id)
        flow = await self._flow(db, request, session, flow, browser, FlowState.NO_ACCESS)
        flow.data = {**flow.data, "no_access": {
            "reason": reason, "org": org.name if org else None,
            "product": product.name if product else None}}
        return Interaction(flow.id, FlowState.NO_ACCESS)

    async def _flow(self, db: AsyncSession, request: AuthorizationRequest, session: BrowserSession,
                    flow: AuthorizationFlow | None, browser: Browser | None, state: FlowState) -> AuthorizationFlow:
        """The sign-in's flow in `state` (a new one, bound to this browser, when the person came
        with a session and no flow existed)."""
        if flow is None:
            flow = await self.s.flows.new_flow(db, request, state, browser=browser.cookie if browser else None)
        flow.state, flow.user_id, flow.session_id = state, session.user_id, session.id
        flow.data = dict(flow.data or {})
        await db.flush()
        return flow

"""What every organisation page shares: the sign-in gate, CSRF bound to the session and the form,
one transaction per request, and the mapping of the organisation services' refusals to pages.

- No session → sign in on an account flow (bound to this browser's CSRF cookie) and come back.
- The organisation's sign-in policy holds here as it does for tokens (orgs/policy.py), for a
  member of the organisation the page is about (a stranger learns nothing: the service answers
  404): a session the policy refuses (a phone number and SMS code alone) → sign in again with the
  password; older than the policy's maximum age → sign in again; no second factor the policy
  accepts → a second factor (an account step-up offering only the accepted factors), and a page
  saying so when the account has none of them.
- A restricted session (the policy's `max_role`, e.g. a phone-code sign-in capped at "member")
  acts with the capped role: when the cap lowers the person's role, each page and form is checked
  against the permission table with the capped role (PAGE_ACTIONS, FORM_ACTIONS) before the
  service, which checks the real role, so the stricter of the two holds; actions whose rules weigh
  their target (TARGETED) are not judged here and need the restriction lifted. Beyond the cap → a
  second factor lifts the restriction (any the account has; none at all → sign in again with the
  password). Accepting ownership needs a session the cap does not hold below owner.
- OrgNotFound → 404, the same page whether the organisation exists or not.
- Forbidden → 403 page. Conflict → the page again with the message, 409. OrgError → the page
  again with the message (and what was typed), 400.
- A successful POST answers 303 to its page with `?done=<key>` (a fixed table, nothing reflected).

The routes hold no rules: they hide the controls a role may not use (permissions.allowed) but the
service called always decides.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.self_service import SelfServiceError, SignInRequired
from idp.audit.service import Actor
from idp.flows.service import FlowError
from idp.orgs import permissions
from idp.orgs.claims import cap_org_role
from idp.orgs.errors import Forbidden, OrgError, OrgNotFound
from idp.orgs.models import Organisation
from idp.ratelimit.errors import RateLimited
from idp.sessions.models import BrowserSession
from idp.ui.i18n import N_, negotiate
from idp.ui.login import browser_of, interaction_redirect
from idp.ui.routes import current_session
from idp.ui.web import FORM_EXPIRED, Csrf, client_ip, error_page, render, services, too_many_page

# Every form of the organisation pages; each CSRF token is bound to "<session id>|<form>".
FORMS = ("org_create", "org_leave", "invite", "invitation_revoke", "invitation_resend", "member_role",
         "member_remove", "username_create", "ownership_offer", "ownership_withdraw", "ownership_accept",
         "access_grant", "access_revoke", "contact_request", "contact_withdraw", "contact_resend",
         "policies")
_REF = re.compile(r"[A-Za-z0-9_-]{1,64}")
NOT_FOUND = N_("This organisation does not exist, or you are not a member of it.")
FORBIDDEN = N_("Your role in this organisation does not allow this.")
NO_SECOND_FACTOR = N_("This organisation requires a second sign-in step that your account cannot offer. Add an authenticator app or a verified phone number to your account first.")
# The permission a restricted session's capped role must have for each page (by template) and
# form; anything not listed is refused to a restricted session (see the module's docstring).
PAGE_ACTIONS = {
    "orgs_overview.html": "org.view", "orgs_members.html": "members.view",
    "orgs_ownership.html": "ownership.transfer", "orgs_products.html": "products.view",
    "orgs_contacts.html": "contacts.view", "orgs_policies.html": "policies.view",
    "orgs_audit.html": "audit.view",
}
FORM_ACTIONS = {
    "org_leave": "org.leave", "invite": "members.invite", "invitation_revoke": "members.invite",
    "invitation_resend": "members.invite", "member_role": "members.change_role",
    "member_remove": "members.remove", "username_create": "usernames.create",
    "ownership_offer": "ownership.transfer", "ownership_withdraw": "ownership.transfer",
    "ownership_accept": "ownership.accept",  # not in the table: the cap must allow "owner"
    "access_grant": "products.manage_access", "access_revoke": "products.manage_access",
    "contact_request": "contacts.manage", "contact_withdraw": "contacts.manage",
    "contact_resend": "contacts.manage", "policies": "policies.manage",
}
# Actions whose rules also weigh the target (the member acted on, the role or licence given). The
# services judge those with the real role, and an owner and an admin differ there (the owner's
# licences, owner-level product roles): a session whose cap lowers its role steps up for them.
TARGETED = frozenset({"members.invite", "members.change_role", "members.remove", "usernames.create",
                      "products.manage_access"})
ROLE_NAMES = {"owner": N_("Owner"), "admin": N_("Admin"), "editor": N_("Editor"), "member": N_("Member")}
# What a page says after a successful POST (?done=<key>).
DONE_TEXTS = {
    "created": N_("The organisation was created. You are its owner."),
    "left": N_("You left the organisation."),
    "invited": N_("The invitation was sent."),
    "revoked": N_("The invitation was revoked."),
    "resent": N_("The invitation was sent again."),
    "role": N_("The role was changed."),
    "removed": N_("The member was removed."),
    "username": N_("The username was created and its temporary password sent."),
    "offered": N_("Ownership was offered. It passes when the member accepts."),
    "withdrawn": N_("The offer was withdrawn."),
    "accepted": N_("You are now the owner of this organisation."),
    "granted": N_("Product access was saved."),
    "access_revoked": N_("Product access was removed."),
    "requested": N_("The change was requested. Both contacts must confirm it by email."),
    "request_withdrawn": N_("The request was withdrawn."),
    "request_resent": N_("The confirmation emails were sent again."),
    "policies": N_("The policies were saved."),
}


class _Forged(Exception):
    """The form's CSRF token does not match this browser and session."""


class _PolicyStep(Exception):
    """The organisation's policy wants more of this session (nothing was changed):
    "sign_in" (again), "password" (again, with the password: no code-only sign-in) or "step_up"
    (a second factor among `allowed`, None: any; `or_password`: the password sign-in when the
    account has no such factor, else a page saying so)."""

    def __init__(self, kind: str, allowed: tuple[str, ...] | None = None, *, or_password: bool = False) -> None:
        super().__init__(kind)
        self.kind, self.allowed, self.or_password = kind, allowed, or_password


@dataclass
class Ctx:
    """One request's caller: their session and the Actor the services take."""

    request: Request
    session: BrowserSession
    actor: Actor
    values: dict = field(default_factory=dict)  # what was typed, shown again after an OrgError

    @property
    def s(self):
        return services(self.request)

    @property
    def user_id(self) -> str:
        return self.session.user_id

    @property
    def locale(self) -> str:
        return locale_of(self.request)

    @property
    def ip(self) -> str:
        return client_ip(self.request)


Loader = Callable[[AsyncSession, Ctx], Awaitable[dict]]


@dataclass
class Page:
    """A GET page: where it lives (the return_to of a sign-in), its template and its data."""

    path: str
    template: str
    load: Loader


def locale_of(request: Request) -> str:
    s = services(request)
    return negotiate(None, request.headers.get("accept-language"), s.settings.default_locale)


def field_of(form, name: str, maximum: int = 1000) -> str:
    """A text field; a file part or a missing field reads as empty, overlong input is cut (the
    services refuse what is still too long)."""
    value = form.get(name)
    return value[:maximum] if isinstance(value, str) else ""


def ref_ok(ref: str) -> bool:
    return isinstance(ref, str) and bool(_REF.fullmatch(ref))


def org_path(ref: str, suffix: str = "") -> str:
    """A path under /orgs/<ref> safe to use as a return_to (a bad ref falls back to /orgs)."""
    return f"/orgs/{ref}{suffix}" if ref_ok(ref) else "/orgs"


def see(location: str) -> Response:
    return RedirectResponse(location, status_code=303)


def can(role: str | None, action: str, **targets) -> bool:
    return role is not None and permissions.allowed(role, action, **targets)


def sections(role: str | None) -> dict[str, bool]:
    """Which sections of the navigation this role sees (the service still decides each action)."""
    return {"members": can(role, "members.view"), "ownership": can(role, "ownership.transfer"),
            "products": can(role, "products.view"), "contacts": can(role, "contacts.view"),
            "policies": can(role, "policies.view"), "audit": can(role, "audit.view")}


async def _sign_in(request: Request, return_to: str, exc: SignInRequired) -> Response:
    s, csrf = services(request), Csrf(request)
    flow_id = await s.db.run(lambda db: s.flows.start_account_flow(db, return_to=return_to, browser=csrf.cookie,
                                                                   max_age=exc.max_age))
    response = RedirectResponse(f"/login?flow={flow_id}", status_code=303)
    csrf.persist(response)
    return response


async def _policy_step(request: Request, return_to: str, exc: _PolicyStep) -> Response:
    """Start what the policy asks for (in a new transaction: the request's own rolled back)."""
    s, csrf = services(request), Csrf(request)

    async def work(db):
        if exc.kind == "step_up":
            session = await current_session(request, db)
            if session is not None:
                outcome = await s.flows.start_account_step_up(
                    db, session, return_to=return_to, browser=browser_of(request, csrf=csrf), allowed=exc.allowed)
                if outcome is not None:
                    return interaction_redirect(outcome)
                if not exc.or_password:
                    return None
        flow_id = await s.flows.start_account_flow(db, return_to=return_to, browser=csrf.cookie, max_age=0,
                                                   password_only=exc.kind != "sign_in")
        return RedirectResponse(f"/login?flow={flow_id}", status_code=303)

    try:
        response = await s.db.run(work)
    except RateLimited as limited:  # the SMS guard, sending the second factor's code
        return too_many_page(request, limited.retry_after)
    except FlowError as error:  # the factor's destination went away meanwhile
        return error_page(request, str(error), status_code=403)
    if response is None:
        return error_page(request, NO_SECOND_FACTOR, status_code=403)
    csrf.persist(response)
    return response


async def _ctx(request: Request, db: AsyncSession) -> Ctx:
    s = services(request)
    session = s.self_service.require_session(await current_session(request, db))
    return Ctx(request, session, Actor.user(session.user_id))


async def _org_of(db: AsyncSession, ctx: Ctx, form_name: str | None, form) -> Organisation | None:
    """The organisation whose policy holds for this request: the offer's for accepting an
    ownership offer (a live one made to the caller; any other the service refuses), else the one
    in the path."""
    s = ctx.s
    if form_name == "ownership_accept":
        offer_id = field_of(form, "offer", 64)
        offer = next((o for o in await s.orgs.ownership.offers_for(db, ctx.actor) if o.id == offer_id), None)
        return await s.orgs.find(db, offer.org_id) if offer is not None else None
    ref = ctx.request.path_params.get("ref")
    return await s.orgs.find(db, ref) if isinstance(ref, str) and ref_ok(ref) else None


async def _hold_to_policy(db: AsyncSession, ctx: Ctx, org: Organisation | None, action: str | None) -> None:
    """Raise _PolicyStep unless the caller's session satisfies `org`'s sign-in policy and, when
    the policy restricts it, its capped role may do `action` (see the module's docstring)."""
    if org is None:
        return
    membership = await ctx.s.orgs.membership(db, org.id, ctx.user_id)
    if membership is None:
        return  # a stranger: the service says "not found", whatever the session
    req = ctx.s.org_policies.requirements_of(org, ctx.session)
    problem = req.problem(ctx.session.auth_time)
    if problem == "refused":
        raise _PolicyStep("password")
    if problem == "max_age":
        raise _PolicyStep("sign_in")
    if problem == "second_factor":
        raise _PolicyStep("step_up", tuple(req.allowed_factors) or None)
    if req.max_role is None:
        return
    capped = cap_org_role(membership.role, req.max_role)
    if action == "ownership.accept":
        allowed = cap_org_role("owner", req.max_role) == "owner"
    elif capped == membership.role:
        allowed = True  # the cap does not lower this role: the service's check is the capped one
    else:
        allowed = (action in permissions.PERMISSIONS and action not in TARGETED
                   and permissions.allowed(capped, action))
    if not allowed:
        raise _PolicyStep("step_up", or_password=True)


def _refusal_page(request: Request, exc: OrgError) -> Response:
    if isinstance(exc, OrgNotFound):
        # The default message for strangers and unknown organisations alike; a member told about
        # a missing object of their own organisation (a product, an invitation) gets the service's.
        message = exc.message if exc.message != OrgNotFound().message else NOT_FOUND
        return error_page(request, message, status_code=404)
    if isinstance(exc, Forbidden):
        message = exc.message if exc.message != Forbidden().message else FORBIDDEN
        return error_page(request, message, status_code=403)
    return error_page(request, exc.message, status_code=exc.status)


async def show(request: Request, page: Page, *, error: str | None = None, status_code: int = 200,
               values: dict | None = None) -> Response:
    s, csrf = services(request), Csrf(request)

    async def work(db):
        ctx = await _ctx(request, db)
        await _hold_to_policy(db, ctx, await _org_of(db, ctx, None, None), PAGE_ACTIONS.get(page.template))
        return ctx, await page.load(db, ctx)

    try:
        ctx, context = await s.db.run(work)
    except SignInRequired as exc:
        return await _sign_in(request, page.path, exc)
    except _PolicyStep as exc:
        return await _policy_step(request, page.path, exc)
    except OrgError as exc:
        return _refusal_page(request, exc)
    done = request.query_params.get("done")
    return render(request, page.template, {
        "role_names": ROLE_NAMES, **context,
        "csrf": {form: csrf.token(f"{ctx.session.id}|{form}") for form in FORMS},
        "error": error, "done": DONE_TEXTS.get(done or ""), "values": values or {},
    }, status_code=status_code, csrf=csrf)


Action = Callable[[AsyncSession, Ctx, object], Awaitable[Response]]


async def act(request: Request, form_name: str, page: Page, action: Action) -> Response:
    """Check the session and CSRF, run `action` (one service call) in one transaction, and map
    refusals: nothing is changed by a refused request (the transaction rolls back)."""
    s, csrf = services(request), Csrf(request)
    form = await request.form()
    values = {key: value[:200] for key, value in form.items() if isinstance(value, str) and key != "csrf_token"}

    async def work(db):
        ctx = await _ctx(request, db)
        if not csrf.valid(form.get("csrf_token"), f"{ctx.session.id}|{form_name}"):
            raise _Forged()
        await _hold_to_policy(db, ctx, await _org_of(db, ctx, form_name, form), FORM_ACTIONS.get(form_name))
        ctx.values = values
        return await action(db, ctx, form)

    try:
        return await s.db.run(work)
    except SignInRequired as exc:
        return await _sign_in(request, page.path, exc)
    except _PolicyStep as exc:
        return await _policy_step(request, page.path, exc)
    except _Forged:
        return error_page(request, FORM_EXPIRED, status_code=403)
    except RateLimited as exc:
        return too_many_page(request, exc.retry_after)
    except (OrgNotFound, Forbidden) as exc:
        return _refusal_page(request, exc)
    except OrgError as exc:  # Conflict (409) and bad input (400): the page again, with the message
        return await show(request, page, error=exc.message, status_code=exc.status, values=values)
    except SelfServiceError as exc:
        return await show(request, page, error=exc.message, status_code=exc.status, values=values)


__all__ = ["Ctx", "DONE_TEXTS", "Page", "act", "can", "field_of", "locale_of", "org_path", "ref_ok", "see",
           "sections", "show"]

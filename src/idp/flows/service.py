"""The sign-in interaction: a state machine persisted in `authorization_flows`.

    LOGIN ──identifier──▶ PASSWORD ──password──┐
      │  └─phone, SMS on─▶ CODE ──code─────────┤   (PASSWORD ⇄ CODE: "send me a code instead")
      └──identifier + password (one form)──────┤
                                               ▼
                 account has a second factor, or acr_values asks for one?
                      yes ──▶ SECOND_FACTOR ──code / app / password──┐
                      no ────────────────────────────────────────────┤
                                                                     ▼
                     temporary password? ──yes──▶ NEW_PASSWORD ──────┤
                                                                     ▼
                        a new browser session ──▶ CONSENT | code to the client | account page

A session that already exists but lacks the second factor a client asks for starts at
SECOND_FACTOR (step-up). Each step loads the flow under a row lock and checks its state; a spent
or expired flow is refused. A password (either factor, or the new one replacing a temporary one)
is hashed between two transactions, with no connection held (flows/password_check.py). The
identifier step never looks at whether an account exists: the next step depends on what was
typed and on policy only, and unknown accounts walk the same pages (no code is sent to them) and
fail with the same message.

Audit events (audit/): a started session is `user.signed_in` (`user.step_up` when it adds a
second factor to a live session), each refused answer exactly one `user.sign_in_failed` with its
reason, each queued code `code.sent`. Until the person is authenticated the actor is a user
without an id (someone at a browser), coming through the flow's client; the account, when one
matches, is the target. A disabled account is refused only after a right answer.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, NoReturn

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.errors import AccountError
from idp.accounts.models import User
from idp.accounts.password_policy import normalise_password
from idp.accounts.phones import PhoneNumberError
from idp.audit.service import Actor
from idp.db import utcnow
from idp.flows.models import AuthorizationFlow, FlowState
from idp.flows.password_check import PasswordCheck, Verdict
from idp.oauth.authorization import (
    ACR_MFA, ACR_SINGLE_FACTOR, AuthorizationRequest, Interaction, Redirect, wants_mfa,
)
from idp.otp.service import CodeInvalid, CodeProblem, Purpose, ResendTooSoon, TooManyAttempts
from idp.ratelimit.errors import RateLimited
from idp.ratelimit.sms import ip_key
from idp.security import keyed_hash, same
from idp.sessions.models import BrowserSession

if TYPE_CHECKING:
    from idp.services import Services


_FLOW_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the alphabet of db.new_id()
# A path on this server: one leading slash, never "//" or "/\\" (which browsers read as a host).
_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_.~?=&%-]*")
# Flows and sessions count methods by these names: pwd, sms, email (a code by email), totp and
# recovery. Two different names are two factors. Tokens carry RFC 8176 values, where a code by
# email, an app's code and a recovery code are all one-time passwords ("otp").
AMR = {"pwd": "pwd", "sms": "sms", "email": "otp", "totp": "otp", "recovery": "otp", "otp": "otp"}
CODE_METHODS = ("sms", "email")


class FlowError(Exception):
    """The flow is unknown, expired or not in the state this step needs."""


class LoginFailed(Exception):
    """Wrong login or password (the same answer whether or not the account exists)."""


class SecondFactorFailed(Exception):
    """The second-factor answer was wrong (a code, an app's code, a recovery code, a password)."""


class AccountDisabled(Exception):
    """The factor was right, but the account is disabled (users.disabled_at): no session. Only
    said after a correct answer, so a wrong password for a disabled account is an ordinary wrong
    password. The failure is audited, so the transaction commits (Database.run)."""

    keeps_changes = True


# Why a sign-in failed, as `user.sign_in_failed` events say it (after.reason).
UNKNOWN_ACCOUNT, WRONG_PASSWORD, WRONG_CODE = "unknown_account", "wrong_password", "wrong_code"
WRONG_SECOND_FACTOR, LOCKED, DISABLED = "wrong_second_factor", "locked", "disabled"


@dataclass
class LoginResult:
    outcome: Redirect | Interaction
    session_cookie: str | None = None  # set when a session started


@dataclass
class FlowView:
    """What a page needs to show a step."""

    flow: AuthorizationFlow
    request: AuthorizationRequest
    client_name: str

    @property
    def data(self) -> dict:
        return self.flow.data or {}


@dataclass
class Browser:
    """Who is asking: for rate limits, the session it replaces, the session list, and `cookie`
    (the browser's CSRF cookie) to which every flow it starts is bound."""

    ip: str = "0.0.0.0"
    previous_cookie: str | None = None
    user_agent: str | None = None
    locale: str = "en"
    cookie: str | None = None


# The identifier page can be shown again until the first factor has passed ("not you?").
IDENTIFIER_STATES = (FlowState.LOGIN, FlowState.PASSWORD, FlowState.CODE)


class FlowService:
    def __init__(self, services: Services) -> None:
        from idp.flows.organisation import OrganisationStep

        self.s = services
        self.organisation = OrganisationStep(services)  # after authentication, before consent

    # ---- loading ------------------------------------------------------------------------------

    def browser_binding(self, cookie: str | None) -> str | None:
        """What a flow stores to know its browser: an HMAC of the browser's CSRF cookie."""
        return keyed_hash(self.s.csrf_key, f"flow-browser\x00{cookie}") if cookie else None

    async def load(self, db: AsyncSession, flow_id: str | None, state: FlowState | tuple[FlowState, ...],
                   *, browser: str | None, lock: bool = False, named: bool = False) -> FlowView:
        """The flow, if it is live, in `state`, and started by this browser (`browser` is its
        CSRF cookie): a leaked flow id is of no use elsewhere, so nobody can finish someone
        else's sign-in, nor make a victim's application receive a code for their own account.
        `named`: with the client's name, for a page that shows it (steps that only post need
        none: one query fewer)."""
        if not isinstance(flow_id, str) or not _FLOW_ID.fullmatch(flow_id):
            raise FlowError("unknown flow")
        query = select(AuthorizationFlow).where(AuthorizationFlow.id == flow_id)
        if lock:
            query = query.with_for_update()
        flow = (await db.execute(query)).scalar_one_or_none()
        if flow is None or flow.expires_at <= utcnow():
            raise FlowError("this sign-in link has expired; start again from the application")
        bound = (flow.data or {}).get("browser")
        if bound is not None and not (browser and same(bound, self.browser_binding(browser))):
            raise FlowError("this sign-in link has expired; start again from the application")
        if flow.state not in (state if isinstance(state, tuple) else (state,)):
            raise FlowError("this step is already done; start again from the application")
        client = await self.s.clients.get_cached(db, flow.client_id) if named and flow.client_id else None
        return FlowView(flow, AuthorizationRequest(**flow.request), client.name if client else "")

    async def new_flow(self, db: AsyncSession, request: AuthorizationRequest, state: FlowState, *,
                       browser: str | None, session: BrowserSession | None = None,
                       **data) -> AuthorizationFlow:
        """A flow in `state`, bound to `browser` (its CSRF cookie; see `load`), for `session`'s
        person if one is signed in; `data` starts its step data. The one way flows are made."""
        flow = AuthorizationFlow(
            client_id=request.client_id or None, request=asdict(request), state=state,
            user_id=session.user_id if session else None, session_id=session.id if session else None,
            data={"browser": self.browser_binding(browser), **data},
            expires_at=utcnow() + timedelta(seconds=self.s.settings.flow_ttl),
        )
        db.add(flow)
        await db.flush()
        return flow

    def _update(self, view: FlowView, state: FlowState, **data) -> Interaction:
        # A new dict: the JSON column only notices assignment, not mutation.
        view.flow.data = {**view.data, **data}
        view.flow.state = state
        return Interaction(view.flow.id, state)

    # ---- flows that start here -----------------------------------------------------------------

    async def start_account_flow(self, db: AsyncSession, *, return_to: str, browser: str | None,
                                 max_age: int | None = None, ui_locales: str | None = None,
                                 password_only: bool = False) -> str:
        """A sign-in for our own pages (no client), bound to `browser` (its CSRF cookie): the
        browser goes to `/login?flow=<id>` and, once signed in, is sent to `return_to`.
        `password_only`: no sign-in by a code alone (an organisation's policy refused it)."""
        if not _LOCAL_PATH.fullmatch(return_to):
            raise ValueError("return_to must be a path on this server")
        request = AuthorizationRequest(client_id="", redirect_uri=return_to, redirect_uri_sent=False,
                                       scopes=[], max_age=max_age, ui_locales=ui_locales)
        extra = {"password_only": True} if password_only else {}
        return (await self.new_flow(db, request, FlowState.LOGIN, browser=browser, **extra)).id

    async def start_account_step_up(self, db: AsyncSession, session: BrowserSession, *, return_to: str,
                                    browser: Browser, allowed: tuple[str, ...] | None = None) -> Interaction | None:
        """A second factor for our own pages (no client): an organisation's policy asks for one
        the session lacks (the organisation pages). The flow, bound to `browser`, starts at
        SECOND_FACTOR offering only the `allowed` methods (None: any the account has); once done,
        a new session (the methods so far and this one) and back to `return_to`. None when the
        account has none of those methods (nothing is left behind then)."""
        if not _LOCAL_PATH.fullmatch(return_to):
            raise ValueError("return_to must be a path on this server")
        request = AuthorizationRequest(client_id="", redirect_uri=return_to, redirect_uri_sent=False, scopes=[])
        flow = await self.new_flow(db, request, FlowState.SECOND_FACTOR, browser=browser.cookie, session=session)
        outcome = await self.start_step_up(db, request, session, browser, flow=flow, allowed=allowed)
        if outcome is None:
            await db.delete(flow)
            await db.flush()
        return outcome

    async def start_step_up(self, db: AsyncSession, request: AuthorizationRequest,
                            session: BrowserSession, browser: Browser | None, *,
                            flow: AuthorizationFlow | None = None,
                            allowed: tuple[str, ...] | None = None) -> Interaction | None:
        """A signed-in person whose client (or organisation) asks for a second factor the session
        lacks: the flow (a new one, or `flow`) at SECOND_FACTOR offering only the `allowed`
        methods, or None when the account has no second method to offer."""
        user = await self.s.accounts.get(db, session.user_id)
        if session.methods:  # by name (pwd, sms, email, totp, recovery), first factor first
            done = list(session.methods)
            first = done[0]
        else:  # a session from before methods were recorded: its amr (an "otp" stays unknown)
            done = [m for m in session.amr if m != "mfa"]
            first = next((m for m in done if m in ("pwd", "sms")), "email" if "otp" in done else "pwd")
        methods = await self.s.factors.methods(db, user, first=first, step_up=True)
        if allowed is not None:
            methods = [method for method in methods if method in allowed]
        if not methods:
            return None
        browser = browser or Browser()
        if flow is None:
            flow = await self.new_flow(db, request, FlowState.SECOND_FACTOR, browser=browser.cookie,
                                       session=session, done=done, step_up=True)
        else:
            flow.state, flow.user_id, flow.session_id = FlowState.SECOND_FACTOR, user.id, session.id
            flow.data = {**(flow.data or {}), "done": done, "step_up": True}
            await db.flush()
        return await self._offer_factor(db, FlowView(flow, request, ""), user, methods, methods[0], browser)

    # ---- first factor --------------------------------------------------------------------------

    async def submit_identifier(self, db: AsyncSession, flow_id: str | None, typed: str,
                                browser: Browser) -> Interaction:
        """LOGIN → PASSWORD, or → CODE for a phone number when SMS sign-in is on."""
        view = await self.load(db, flow_id, IDENTIFIER_STATES, browser=browser.cookie, lock=True)
        await self.s.rate_limiter.hit("login_per_ip", browser.ip)
        kind, login = self._read_login(typed)
        view.flow.data = {**view.data, "login": login, "kind": kind, "typed": _shown(typed)}
        # An organisation that refused a code-only sign-in asks for the password (organisation.py).
        if kind == "phone" and self.s.settings.login_code_sms and not view.data.get("password_only"):
            return await self._send_login_code(db, view, "sms", browser)
        return self._update(view, FlowState.PASSWORD)

    async def submit_password(self, db: AsyncSession, flow_id: str | None, login: str,
                              password: str, browser: Browser | None = None) -> PasswordCheck:
        """The one-form login (identifier and password together; password managers post it)."""
        browser = browser or Browser()
        view = await self.load(db, flow_id, IDENTIFIER_STATES, browser=browser.cookie, lock=True)
        await self.s.rate_limiter.hit("login_per_ip", browser.ip)
        kind, value = self._read_login(login)
        view.flow.data = {**view.data, "login": value, "kind": kind, "typed": _shown(login)}
        return await self._check_password(db, view, value, password, browser)

    async def submit_password_step(self, db: AsyncSession, flow_id: str | None, password: str,
                                   browser: Browser) -> PasswordCheck:
        view = await self.load(db, flow_id, FlowState.PASSWORD, browser=browser.cookie, lock=True)
        await self.s.rate_limiter.hit("login_per_ip", browser.ip)
        return await self._check_password(db, view, view.data.get("login"), password, browser)

    async def _check_password(self, db: AsyncSession, view: FlowView, login: str | None,
                              password: str, browser: Browser) -> PasswordCheck:
        # Failures count per account and client address: guessing from one address is slowed,
        # and nobody elsewhere can keep the owner's account closed. Unknown logins count alike.
        failures_key = f"{login or ''}|{ip_key(browser.ip)}"
        try:
            await self.s.rate_limiter.test("login_per_account", failures_key)
        except RateLimited as error:
            await self._failed(db, view, await self._account_of(db, login), LOCKED, "pwd", error)

        async def account(db: AsyncSession, _view: FlowView) -> User | None:
            return await self._account_of(db, login)

        async def checked(db: AsyncSession, view: FlowView, user: User | None, verdict: Verdict) -> LoginResult:
            if (not verdict.ok or user is None
                    or (user.password_must_change and self.s.temporary_passwords.expired(user))):
                # An expired temporary password is a wrong one. A disabled account's wrong password
                # too: only the right one hears that the account is disabled.
                await self._failed(db, view, user, WRONG_PASSWORD if user else UNKNOWN_ACCOUNT, "pwd",
                                   LoginFailed(), counts=failures_key)
            if verdict.new_hash is not None:  # made with older argon2 parameters
                user.password_hash = verdict.new_hash
            return await self._after_first_factor(db, view, user, "pwd", browser)

        # Unknown logins spend the same hash time (the dummy hash, accounts/passwords.py).
        return self._password_check(view, await account(db, view), password, browser, account, checked,
                                    rehash=True)

    def _password_check(self, view: FlowView, user: User | None, password: str, browser: Browser,
                        account, checked, *, rehash: bool = False, replace: bool = False,
                        retries: int = 1) -> PasswordCheck:
        """Check `password` against `user`'s hash outside any transaction, then, in a new one,
        `checked(db, view, user, verdict)` with the flow and the account read again (password_check.py).
        `account(db, view)` finds the account again. Another step of this flow meanwhile (a
        double submit, a second tab) is refused as an already done step; a changed account or
        password hash is checked again (`retries` times, then refused)."""
        flow_id, state, data = view.flow.id, view.flow.state, dict(view.data)
        seen = (user.id, user.password_hash) if user else None

        async def resume(db: AsyncSession, verdict: Verdict) -> LoginResult | PasswordCheck:
            again = await self.load(db, flow_id, state, browser=browser.cookie, lock=True)
            if again.data != data:
                raise FlowError("this step is already done; start again from the application")
            now = await account(db, again)
            if ((now.id, now.password_hash) if now else None) != seen:
                if retries <= 0:
                    raise FlowError("this sign-in link has expired; start again from the application")
                return self._password_check(again, now, password, browser, account, checked,
                                            rehash=rehash, replace=replace, retries=retries - 1)
            return await checked(db, again, now, verdict)

        # Hashes are of the NFKC form (password_policy.py), whatever the keyboard sent.
        return PasswordCheck(user.password_hash if user else None, normalise_password(password), resume,
                             rehash=rehash and user is not None, replace=replace)

    async def _account_of(self, db: AsyncSession, login: str | None) -> User | None:
        """The account `login` names: email, phone number or organisation username, through
        verified identifiers only."""
        return await self.s.accounts.find_by_login(db, login, usernames=True) if login else None

    async def request_login_code(self, db: AsyncSession, flow_id: str | None, browser: Browser,
                                 *, resend: bool = False) -> Interaction:
        """PASSWORD → CODE ("send me a code instead"), or a new code on the CODE page."""
        view = await self.load(db, flow_id, FlowState.CODE if resend else FlowState.PASSWORD,
                               browser=browser.cookie, lock=True)
        await self.s.rate_limiter.hit("login_per_ip", browser.ip)
        channel = "sms" if view.data.get("kind") == "phone" else "email"
        if not self.code_login_enabled(channel) or view.data.get("password_only"):
            raise FlowError("sign-in with a code is not available")
        return await self._send_login_code(db, view, channel, browser)

    def code_login_enabled(self, channel: str) -> bool:
        return self.s.settings.login_code_sms if channel == "sms" else self.s.settings.login_code_email

    async def submit_login_code(self, db: AsyncSession, flow_id: str | None, code: str,
                                browser: Browser) -> LoginResult:
        view = await self.load(db, flow_id, FlowState.CODE, browser=browser.cookie, lock=True)
        login, channel = view.data.get("login"), view.data.get("channel")
        user = await self.s.accounts.find_by_login(db, login) if login else None
        if user is None:
            await self._failed(db, view, None, UNKNOWN_ACCOUNT, channel, CodeInvalid("no account behind this login"))
        try:
            await self.s.otp.verify(db, Purpose.LOGIN, login, code or "")
        except CodeProblem as error:
            await self._failed(db, view, user, LOCKED if isinstance(error, TooManyAttempts) else WRONG_CODE,
                               channel, error)
        return await self._after_first_factor(db, view, user, channel, browser)

    async def _send_login_code(self, db: AsyncSession, view: FlowView, channel: str,
                               browser: Browser) -> Interaction:
        """A sign-in code to what was typed, if it is an account's verified email or number.
        Every valid number is counted by the SMS guard, known or not, so neither a 429 nor its
        absence says anything about accounts."""
        login = view.data.get("login")
        user = await self.s.accounts.find_by_login(db, login) if login else None
        if login and channel == "sms":
            try:
                await self.s.sms_guard.check_send(ip=browser.ip, number_e164=login,
                                                  account_id=user.id if user else None)
            except PhoneNumberError:
                user = None  # a landline or a country we do not text: nothing is sent
        elif login:
            await self.s.rate_limiter.hit("code_per_address", f"{login}|{ip_key(browser.ip)}")
        if login:
            # A code is issued for unknown destinations too (and never sent): the same work,
            # the same time, the same cooldowns.
            await self._send_code(db, view, user, Purpose.LOGIN, channel, login, "login", browser.locale)
        return self._update(view, FlowState.CODE, channel=channel)

    async def _send_code(self, db: AsyncSession, view: FlowView, user: User | None, purpose: Purpose,
                         channel: str, destination: str, kind: str, locale: str) -> None:
        """A code issued to `destination`, and queued (and audited) only when `user` is its
        account: an unknown destination costs the same work and receives nothing."""
        try:
            issued = await self.s.otp.issue(db, purpose, destination)
        except (ResendTooSoon, TooManyAttempts):
            # The code sent a moment ago stays valid (a locked destination refuses at the code
            # step): the page must not differ from an unknown account's.
            return
        if user is None:
            return
        await self.s.courier.enqueue(db, channel=channel, recipient=destination, kind=kind,
                                     locale=locale, params={"code": issued.code,
                                                            "minutes": max(1, issued.ttl_seconds // 60)})
        await self.s.audit.record(db, Actor("user", None, view.flow.client_id), "code.sent",
                                  org_id=_org_of(view, user.id), target_type="user", target_id=user.id,
                                  after={"channel": channel, "purpose": purpose.value})

    # ---- second factor -------------------------------------------------------------------------

    async def _after_first_factor(self, db: AsyncSession, view: FlowView, user: User, method: str,
                                  browser: Browser) -> LoginResult:
        """`method` (pwd, sms or email) passed: a second factor when the account has one or the
        client asks for one, else on to the end. A disabled account stops here."""
        await self._refuse_disabled(db, view, user, method)
        step_up = wants_mfa(view.request)
        needed = step_up or await self.s.factors.has_second_factor(db, user.id)
        methods = await self.s.factors.methods(db, user, first=method, step_up=step_up) if needed else []
        view.flow.user_id = user.id
        # A first factor: a sign-in, whatever the flow was before (no longer a step-up).
        view.flow.data = {**{k: v for k, v in view.data.items() if k != "step_up"}, "done": [method]}
        if not methods:
            # Nothing else to ask: a client that asked for MFA sees acr 1fa and decides.
            return await self._finish(db, view, user, browser)
        return LoginResult(await self._offer_factor(db, view, user, methods, methods[0], browser))

    async def _offer_factor(self, db: AsyncSession, view: FlowView, user: User, methods: list[str],
                            method: str, browser: Browser) -> Interaction:
        if method in CODE_METHODS:
            destination = (await self.s.factors.verified_destinations(db, user.id)).get(method)
            if destination is None:  # removed on the account pages meanwhile
                raise FlowError("this sign-in method is not available")
            if method == "sms":
                try:
                    await self.s.sms_guard.check_send(ip=browser.ip, number_e164=destination,
                                                      account_id=user.id, scope="factor")
                except PhoneNumberError:  # the country left the allow-list meanwhile
                    raise FlowError("this sign-in method is not available") from None
            await self._send_code(db, view, user, Purpose.SECOND_FACTOR, method, destination, "second_factor",
                                  browser.locale)
        return self._update(view, FlowState.SECOND_FACTOR, methods=methods, factor=method)

    async def choose_factor(self, db: AsyncSession, flow_id: str | None, method: str,
                            browser: Browser) -> Interaction:
        """Another of the offered methods (or a new code by the same one)."""
        view = await self.load(db, flow_id, FlowState.SECOND_FACTOR, browser=browser.cookie, lock=True)
        methods = view.data.get("methods") or []
        if method not in methods:
            raise FlowError("this sign-in method is not available")
        user = await self.s.accounts.get(db, view.flow.user_id)
        return await self._offer_factor(db, view, user, methods, method, browser)

    async def submit_second_factor(self, db: AsyncSession, flow_id: str | None, answer: str,
                                   browser: Browser) -> LoginResult | PasswordCheck:
        view = await self.load(db, flow_id, FlowState.SECOND_FACTOR, browser=browser.cookie, lock=True)
        method = view.data.get("factor")
        user = await self.s.accounts.get(db, view.flow.user_id)
        if user is None or method not in (view.data.get("methods") or []):
            raise FlowError("this sign-in link has expired; start again from the application")
        # Guessing an app's 6 digits is bounded per account and address (the otp service bounds
        # the codes it sends); only wrong answers count.
        failures_key = f"factor:{user.id}|{ip_key(browser.ip)}"
        try:
            await self.s.rate_limiter.test("login_per_account", failures_key)
        except RateLimited as error:
            await self._failed(db, view, user, LOCKED, method, error)
        if method == "pwd":
            return self._second_password(view, user, answer or "", browser, failures_key)
        try:
            await self._check_second_factor(db, user, method, answer or "")
        except (SecondFactorFailed, CodeProblem) as error:
            await self._failed(db, view, user, LOCKED if isinstance(error, TooManyAttempts) else WRONG_SECOND_FACTOR,
                               method, error, counts=failures_key)
        return await self._second_factor_passed(db, view, user, method, browser)

    def _second_password(self, view: FlowView, user: User, answer: str, browser: Browser,
                         failures_key: str) -> PasswordCheck:
        """The password as a second factor (after a code): checked outside the transaction."""

        async def account(db: AsyncSession, view: FlowView) -> User | None:
            return await self.s.accounts.get(db, view.flow.user_id)

        async def checked(db: AsyncSession, view: FlowView, user: User | None, verdict: Verdict) -> LoginResult:
            if user is None:  # deleted meanwhile
                raise FlowError("this sign-in link has expired; start again from the application")
            if not verdict.ok:
                await self._failed(db, view, user, WRONG_SECOND_FACTOR, "pwd", SecondFactorFailed(),
                                   counts=failures_key)
            return await self._second_factor_passed(db, view, user, "pwd", browser)

        return self._password_check(view, user, answer, browser, account, checked)

    async def _second_factor_passed(self, db: AsyncSession, view: FlowView, user: User, method: str,
                                    browser: Browser) -> LoginResult:
        view.flow.data = {**view.data, "done": [*view.data.get("done", []), method]}
        return await self._finish(db, view, user, browser)

    async def _check_second_factor(self, db: AsyncSession, user: User, method: str, answer: str) -> None:
        if method in CODE_METHODS:
            destination = (await self.s.factors.verified_destinations(db, user.id)).get(method)
            if destination is None:
                raise CodeInvalid("the destination is gone")
            await self.s.otp.verify(db, Purpose.SECOND_FACTOR, destination, answer)
        elif method == "totp":
            if not await self.s.factors.totp.verify(db, user_id=user.id, code=answer):
                raise SecondFactorFailed()
        elif method == "recovery":
            if not await self.s.factors.recovery.consume(db, user.id, answer):
                raise SecondFactorFailed()
        else:  # "pwd" is checked outside the transaction (_second_password)
            raise SecondFactorFailed()

    async def _failed(self, db: AsyncSession, view: FlowView, user: User | None, reason: str,
                      method: str | None, error: Exception, *, counts: str | None = None) -> NoReturn:
        """Write `user.sign_in_failed` and raise `error`, marked `keeps_changes` so Database.run
        commits the event although the request fails (what else the step wrote is the flow's
        data and the code's attempt counter, which a failure keeps anyway). Each failing step
        calls this once, so one failure is one event. An unknown account has no target, and what
        was typed is not stored: the log must not collect other people's addresses or mistyped
        passwords. `counts` is the login_per_account key the failure counts against, once it
        is committed (`count_failure`)."""
        error.failure_key = counts
        await self.s.audit.record(db, Actor("user", None, view.flow.client_id), "user.sign_in_failed",
                                  org_id=_org_of(view, user.id) if user else None,
                                  target_type="user" if user else None, target_id=user.id if user else None,
                                  after={"reason": reason, "method": method})
        error.keeps_changes = True
        raise error

    async def _refuse_disabled(self, db: AsyncSession, view: FlowView, user: User, method: str | None) -> None:
        if user.disabled_at is not None:
            await self._failed(db, view, user, DISABLED, method, AccountDisabled())

    async def count_failure(self, error: Exception) -> None:
        """Count a refused password or second factor against its account and address. The route
        calls this after Database.run committed the failure: one the database never recorded
        (it went away mid-request, and the person got a 503 and will try again) counts nothing."""
        key = getattr(error, "failure_key", None)
        if key is None:
            return
        try:
            await self.s.rate_limiter.hit("login_per_account", key)
        except RateLimited:
            pass  # already full: the next try is refused by the test before it

    # ---- the end of authentication -------------------------------------------------------------

    async def _finish(self, db: AsyncSession, view: FlowView, user: User, browser: Browser) -> LoginResult:
        if user.password_must_change:
            # A temporary password: a new one before anything else (no session, no code yet).
            return LoginResult(self._update(view, FlowState.NEW_PASSWORD))
        return await self._start_session(db, view, user, browser)

    async def submit_new_password(self, db: AsyncSession, flow_id: str | None, password: str,
                                  browser: Browser) -> PasswordCheck:
        """NEW_PASSWORD → signed in. Raises PasswordRejected (the flow stays where it is) before
        any hash; whether it is the temporary one and its hash are worked out outside the
        transaction (SameAsTemporary)."""
        view = await self.load(db, flow_id, FlowState.NEW_PASSWORD, browser=browser.cookie, lock=True)
        user = await self._changing_temporary(db, view)
        checked = await self.s.temporary_passwords.check_new(db, user, password)  # PasswordRejected

        async def account(db: AsyncSession, view: FlowView) -> User | None:
            return await self.s.accounts.get(db, view.flow.user_id)

        async def changed(db: AsyncSession, view: FlowView, user: User | None, verdict: Verdict) -> LoginResult:
            user = await self._changing_temporary(db, view, user)
            await self.s.temporary_passwords.complete_change(  # PasswordRejected, SameAsTemporary
                db, user, checked, verdict=verdict, actor=Actor.user(user.id, client_id=view.flow.client_id))
            return await self._start_session(db, view, user, browser)

        return self._password_check(view, user, checked, browser, account, changed, replace=True)

    async def _changing_temporary(self, db: AsyncSession, view: FlowView, user: User | None = None) -> User:
        """The account of a NEW_PASSWORD step (`user`, else read), still to change a live
        temporary password and not disabled."""
        user = user or await self.s.accounts.get(db, view.flow.user_id)
        if user is None or not user.password_must_change or self.s.temporary_passwords.expired(user):
            # Gone, changed by a reset meanwhile, or expired while the page was open.
            raise FlowError("this sign-in link has expired; start again from the application")
        await self._refuse_disabled(db, view, user, "pwd")  # before the change, which would be kept
        return user

    async def sign_in(self, db: AsyncSession, flow_id: str | None, user: User, *, method: str,
                      browser: Browser) -> LoginResult:
        """Sign `user` in on a flow of this browser before its first factor, `method` (pwd, sms
        or email) having just been proven (a registration that confirmed its code): a second
        factor if the client asks for one, then a new session, consent, a code or the return page."""
        view = await self.load(db, flow_id, IDENTIFIER_STATES, browser=browser.cookie, lock=True)
        return await self._after_first_factor(db, view, user, method, browser)

    async def _start_session(self, db: AsyncSession, view: FlowView, user: User,
                             browser: Browser) -> LoginResult:
        done = list(dict.fromkeys(view.data.get("done") or ["pwd"]))
        # Disabled while the second factor or the new password was typed: still no session.
        await self._refuse_disabled(db, view, user, done[-1])
        # Two different methods are two factors (RFC 8176 "mfa"). A code by email and one by SMS
        # are both "something you have", but on different channels and devices: we count two.
        mfa = len(done) >= 2
        amr = list(dict.fromkeys(AMR[m] for m in done)) + (["mfa"] if mfa else [])
        # A new session at every login (no fixation), and the one it replaces ends (ASVS 7.2.4).
        previous = await self.s.sessions.from_cookie(db, browser.previous_cookie)
        if previous is not None:
            await self.s.sessions.end(db, previous.id)
        if view.flow.session_id and (previous is None or previous.id != view.flow.session_id):
            await self.s.sessions.end(db, view.flow.session_id)  # a step-up replaces its session
        acr = ACR_MFA if mfa else ACR_SINGLE_FACTOR
        session, cookie = await self.s.sessions.start(
            db, user_id=user.id, amr=amr, acr=acr,
            user_agent=browser.user_agent, methods=done)  # by name: organisation policies read them
        # A step-up (a second factor for a live session) replaces the session like a sign-in.
        await self.s.audit.record(db, Actor.user(user.id, client_id=view.flow.client_id),
                                  "user.step_up" if view.data.get("step_up") else "user.signed_in",
                                  org_id=_org_of(view, user.id), target_type="user", target_id=user.id,
                                  after={"methods": done, "acr": acr, "client_id": view.flow.client_id})
        view.flow.user_id, view.flow.session_id = user.id, session.id
        if view.flow.client_id is None:
            view.flow.state = FlowState.COMPLETE
            return LoginResult(Redirect(view.request.redirect_uri), cookie)
        client = await self.s.clients.get_cached(db, view.flow.client_id)
        outcome = await self.s.authorization.after_authentication(db, view.request, client, session, view.flow,
                                                                  browser)
        return LoginResult(outcome, cookie)

    # ---- consent -------------------------------------------------------------------------------

    async def submit_consent(self, db: AsyncSession, flow_id: str | None, allow: bool,
                             current_session_id: str | None, browser: str | None) -> Redirect:
        view = await self.load(db, flow_id, FlowState.CONSENT, browser=browser, lock=True)
        session = await self.s.sessions.get(db, view.flow.session_id or "")
        # Consent is given by the browser that signed in, in a session still alive.
        if session is None or session.ended_at is not None or session.id != current_session_id:
            raise FlowError("your session has ended; start again from the application")
        return await self.s.authorization.after_consent(db, view.request, view.flow, session, allow)

    # ---- helpers -------------------------------------------------------------------------------

    def _read_login(self, typed: str) -> tuple[str | None, str | None]:
        """(kind, normalised value) of what was typed, or (None, None) for neither an email nor
        a phone number. Never an error: every input walks the same pages."""
        typed = (typed or "").strip()
        if not typed or "\x00" in typed:
            return None, None
        kind = "email" if "@" in typed else "phone"
        try:
            return kind, self.s.accounts.normalise_identifier(kind, typed)
        except AccountError:
            return None, None



def _org_of(view: FlowView, user_id: str) -> str | None:
    """The organisation this sign-in is for, when it is already known (chosen earlier on the
    flow for this person: an organisation's policy sent them to sign in again)."""
    data = view.data
    return data.get("org") if data.get("org_user") == user_id else None


def _shown(typed: str) -> str:
    """What was typed, as the next pages show it back ("Signing in as ...")."""
    return (typed or "").replace("\x00", "").strip()[:320]

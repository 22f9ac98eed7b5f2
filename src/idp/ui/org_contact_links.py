"""The page an emailed contact-change link opens: /orgs/contact-requests?token=...

GET shows the request (which organisation, which role, the current and the new contact, whether
the other contact has answered) and changes nothing: mail scanners and link previews follow links.
POST, with a CSRF token bound to this browser, confirms or refuses; the service spends the token
with one conditional UPDATE.

No sign-in: the token is the proof (seed 002). It is personal, random (256 bits), single use and
sent only to the person's confirmed email address; the page never shows it back in a URL. The
token sits in the query string rather than the path because the access log records paths and
never query strings; no page sends a Referer (`no-referrer`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from idp.orgs.contacts import CONFIRM_PATH, ContactRequestInfo
from idp.orgs.errors import OrgError
from idp.ui.i18n import N_
from idp.ui.orgs.contacts import KIND_NAMES
from idp.ui.web import Csrf, error_page, render, services

router = APIRouter(include_in_schema=False)

FORM = "contact_request"
FORM_EXPIRED = N_("The form expired. Open the link in the email again.")
STATUS_TEXTS = {
    "expired": N_("This request has expired. Ask for a new one if the change is still wanted."),
    "completed": N_("This request is already completed."),
    "refused": N_("This request was refused."),
    "withdrawn": N_("This request was withdrawn or replaced by a newer one."),
}
DONE_TEXTS = {
    "waiting": N_("Thank you. The change now waits for the other contact's confirmation."),
    "completed": N_("Thank you. Both contacts have confirmed, and the change has taken effect."),
    "refused": N_("You refused the request. Nothing was changed, and the requester was told."),
}


def _field(form, name: str, maximum: int) -> str:
    value = form.get(name)
    return value if isinstance(value, str) and len(value) <= maximum else ""


def _person(user) -> str | None:
    if user is None:
        return None
    if user.name and user.email:
        return f"{user.name} ({user.email})"
    return user.name or user.email or None


def _page(request: Request, csrf: Csrf, info: ContactRequestInfo, token: str, *,
          done: str | None = None) -> Response:
    side = info.side or "new"
    other = "new" if side == "old" else "old"
    status = info.status
    answered = info.confirmed(side)
    return render(request, "org_contact_request.html", {
        "org_name": info.org.name, "kind": KIND_NAMES[info.request.kind],
        "old": _person(info.old), "new": _person(info.new), "side": side,
        "until": info.request.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        "status_text": STATUS_TEXTS.get(status) if not done else None,
        "answered": answered and status == "pending",
        "other_confirmed": info.confirmed(other) and info.request.from_user_id is not None,
        "can_answer": status == "pending" and not answered,
        "done": DONE_TEXTS.get(done or ""), "token": token, "csrf_token": csrf.token(FORM),
    }, csrf=csrf)


@router.get(CONFIRM_PATH)
async def show(request: Request) -> Response:
    s, csrf = services(request), Csrf(request)
    token = request.query_params.get("token", "")
    try:
        info = await s.db.run(lambda db: s.contacts.inspect(db, token))
    except OrgError as exc:
        return error_page(request, exc.message, status_code=exc.status)
    return _page(request, csrf, info, token)


@router.post(CONFIRM_PATH)
async def answer(request: Request) -> Response:
    s, csrf = services(request), Csrf(request)
    form = await request.form()
    token = _field(form, "token", 200)
    decision = _field(form, "decision", 20)
    if not csrf.valid(form.get("csrf_token"), FORM):
        return error_page(request, FORM_EXPIRED, status_code=400)
    if decision not in ("confirm", "refuse"):
        return error_page(request, N_("Choose whether to confirm or refuse the request."), status_code=400)
    act = s.contacts.confirm if decision == "confirm" else s.contacts.refuse
    try:
        result = await s.db.run(lambda db: act(db, token))
    except OrgError as exc:  # spent, expired, closed, billing locked: nothing changed
        return error_page(request, exc.message, status_code=exc.status)
    return _page(request, csrf, result.info, token, done=result.outcome)

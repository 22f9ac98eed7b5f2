"""/orgs/<handle>/policies: the organisation's sign-in policy (orgs/policy.py), what is in force
after the platform floor, and the form that changes it (owner and admins)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from idp.orgs.models import ROLES
from idp.orgs.policy import FACTORS
from idp.ui.i18n import N_
from idp.ui.orgs.common import Page, act, can, field_of, org_path, see, show
from idp.ui.orgs.shell import org_context
from idp.ui.web import services

router = APIRouter(include_in_schema=False)
FACTOR_NAMES = {"totp": N_("Authenticator app"), "sms": N_("Code by SMS"), "email": N_("Code by email")}


def _page(request: Request, ref: str) -> Page:
    s = services(request)

    async def load(db, ctx):
        access, context = await org_context(db, ctx, ref, "policies.view", "policies")
        view = await s.org_policies.view(db, ctx.actor, ref)
        return {**context, "view": view, "factors": FACTORS, "factor_names": FACTOR_NAMES, "roles": ROLES,
                "can_manage": can(access.role, "policies.manage"),
                "tightened": view.effective != view.policy}
    return Page(org_path(ref, "/policies"), "orgs_policies.html", load)


@router.get("/orgs/{ref}/policies")
async def policies_page(request: Request, ref: str) -> Response:
    return await show(request, _page(request, ref))


@router.post("/orgs/{ref}/policies")
async def policies_submit(request: Request, ref: str) -> Response:
    s = services(request)

    async def action(db, ctx, form):
        # The whole form is posted: an unticked box is "false", an empty age is "no limit". The
        # service validates every value (and refuses anything looser than the platform floor).
        changes = {
            "require_second_factor": form.get("require_second_factor") == "yes",
            "allowed_factors": [f[:16] for f in form.getlist("allowed_factors")[:10] if isinstance(f, str)],
            "sms_after_password": form.get("sms_after_password") == "yes",
            "phone_code_sign_in": form.get("phone_code_sign_in") == "yes",
            "phone_code_max_role": field_of(form, "phone_code_max_role", 16),
            "max_session_age": field_of(form, "max_session_age", 20).strip(),
        }
        await s.org_policies.update(db, ctx.actor, ref, changes)
        return see(f"{org_path(ref, '/policies')}?done=policies")
    return await act(request, "policies", _page(request, ref), action)

"""What tokens say about the organisation, always recomputed from the database.

With scope `organization` granted and an organisation chosen at sign-in (or by a refresh), the ID
token, the access token and userinfo carry

    "org": {"id": "...", "handle": "acme", "name": "Acme Oy"},
    "org_role": "admin",
    "roles": ["editor"]        # the person's roles in the client's product there (flat; [] if none)

and userinfo with scope `organization:*` lists every membership as
`"orgs": [{"id", "handle", "name", "role"}]`, leaving out organisations whose policy this session
does not satisfy (refused, too old, second factor missing): it never says more than a token for
that organisation could.

Nothing here is copied from the sign-in: membership, role, licence and the organisation's policy
are read when the token is made, so a removed member's next refresh fails and a demoted one's
carries the new role.

A restricted session (orgs/policy.py `Requirements.max_role`, e.g. a sign-in by phone and SMS code
alone) caps what tokens carry. The cap is not stored anywhere: it follows from the organisation's
policy and the grant's `amr` and `methods`, read at token time. The organisation role is lowered
to the cap. A product role is capped at the same level: roles that share the organisation's names
(owner, admin, editor, member) are judged by those names, other roles by their position counted
from the product's lowest role (member = the lowest, editor = the next, ...). A role above the cap
becomes the product's highest role at or below it, or nothing when the product has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from idp.orgs.models import ROLES, Organisation
from idp.orgs.permissions import product_role_level

if TYPE_CHECKING:
    from idp.oauth.models import Client, Grant
    from idp.orgs.policy import Requirements
    from idp.services import Services

ORG_SCOPE = "organization"
ALL_ORGS_SCOPE = "organization:*"
# member 0, editor 1, admin 2, owner 3: higher is more.
_LEVEL = {role: len(ROLES) - 1 - index for index, role in enumerate(ROLES)}


class OrgRefused(Exception):
    """The person may not have tokens for this organisation (now): not a member, no licence for
    the client's product, or the organisation's policy wants a new sign-in."""


def _level(product_roles: list[str], role: str) -> int:
    return product_role_level(product_roles, role)


def cap_org_role(role: str, max_role: str | None) -> str:
    if max_role is None or max_role not in _LEVEL or _LEVEL[role] <= _LEVEL[max_role]:
        return role
    return max_role


def cap_product_role(product_roles: list[str], role: str, max_role: str | None) -> str | None:
    """`role` if it is at or below the cap, else the product's highest role that is; None if none."""
    if max_role is None or max_role not in _LEVEL:
        return role
    cap = _LEVEL[max_role]
    if _level(product_roles, role) <= cap:
        return role
    return next((r for r in product_roles if _level(product_roles, r) <= cap), None)


async def requirements(s: Services, org: Organisation, amr: list[str],
                       methods: list[str] | None = None) -> Requirements:
    """The organisation's sign-in requirements for a session with `amr` and the `methods` behind
    it by name (None for rows from before they were recorded), per orgs/policy.py."""
    return s.org_policies.requirements(org, amr=list(amr or []), methods=methods)


def policy_problem(req: Requirements | None, *, auth_time: float) -> str | None:
    """What the session lacks for the organisation: "refused", "max_age", "second_factor", or
    None (orgs/policy.Requirements.problem). No requirements: nothing is lacking."""
    return None if req is None else req.problem(auth_time)


@dataclass
class Standing:
    """A member as tokens describe them in one organisation, for one client, under the policy."""

    org: Organisation
    role: str  # the membership role, capped
    product_roles: list[str]  # the licence's role in the client's product, capped; [] if none
    has_product: bool  # the client belongs to a product
    requirements: Requirements | None

    @property
    def has_access(self) -> bool:
        """May use the client: any client without a product, else a (capped) licence."""
        return not self.has_product or bool(self.product_roles)

    def claims(self) -> dict:
        return {"org": {"id": self.org.id, "handle": self.org.handle, "name": self.org.name},
                "org_role": self.role, "roles": list(self.product_roles)}


async def standing(s: Services, db: AsyncSession, *, org: Organisation, user_id: str,
                   product_id: str | None, amr: list[str],
                   methods: list[str] | None = None) -> Standing | None:
    """What the person is in `org` for a client of `product_id`; None if not a member."""
    membership = await s.orgs.membership(db, org.id, user_id)
    if membership is None:
        return None
    req = await requirements(s, org, amr, methods)
    max_role = (req.max_role if req else None)
    product_roles: list[str] = []
    if product_id is not None:
        role = await s.products.access_of(db, org.id, user_id, product_id)
        product = await s.products.get(db, product_id) if role else None
        capped = cap_product_role(list(product.roles), role, max_role) if product and role in product.roles else None
        product_roles = [capped] if capped else []
    return Standing(org, cap_org_role(membership.role, max_role), product_roles, product_id is not None, req)


async def for_grant(s: Services, db: AsyncSession, *, grant: Grant, client: Client, scopes: set[str],
                    enforce_policy: bool) -> dict:
    """The organisation claims of a token of `grant` (a code exchange or a refresh). Raises
    OrgRefused when the person is no longer a member, has lost the product's licence, or (with
    `enforce_policy`, on refresh) the session no longer satisfies the organisation's policy."""
    if grant.org_id is None:
        if client.product_id is not None:
            raise OrgRefused("no organisation gives access to this product")
        return {}
    org = await s.orgs.get(db, grant.org_id)
    found = await standing(s, db, org=org, user_id=grant.user_id, product_id=client.product_id,
                           amr=grant.amr, methods=grant.methods) if org else None
    if found is None:
        raise OrgRefused("the person is no longer a member of the organisation")
    if enforce_policy and policy_problem(found.requirements,
                                         auth_time=grant.auth_time.timestamp()):
        raise OrgRefused("the organisation's policy requires a new sign-in")
    if not found.has_access:
        raise OrgRefused("no access to this product in the organisation")
    return found.claims() if ORG_SCOPE in scopes else {}


async def for_userinfo(s: Services, db: AsyncSession, *, grant: Grant | None, client: Client | None,
                       scopes: set[str]) -> dict:
    """Userinfo's organisation claims: the chosen organisation (scope `organization`) and every
    membership (scope `organization:*`). A membership that ended is simply not described, and
    neither is an organisation whose policy this session does not satisfy (refused, too old, no
    second factor): userinfo tells no more than a refresh would give. The chosen organisation is
    also left out when the person has lost the client's product licence there."""
    claims: dict = {}
    if grant is None:
        return claims
    auth_time = grant.auth_time.timestamp()
    if ORG_SCOPE in scopes and grant.org_id is not None:
        org = await s.orgs.get(db, grant.org_id)
        found = await standing(s, db, org=org, user_id=grant.user_id,
                               product_id=client.product_id if client else None, amr=grant.amr,
                               methods=grant.methods) if org else None
        if (found is not None and found.has_access
                and policy_problem(found.requirements, auth_time=auth_time) is None):
            claims.update(found.claims())
    if ALL_ORGS_SCOPE in scopes:
        orgs = []
        for org, membership in await s.orgs.memberships_of(db, grant.user_id):
            req = await requirements(s, org, grant.amr, grant.methods)
            if policy_problem(req, auth_time=auth_time) is not None:
                continue
            orgs.append({"id": org.id, "handle": org.handle, "name": org.name,
                         "role": cap_org_role(membership.role, (req.max_role if req else None))})
        claims["orgs"] = orgs
    return claims

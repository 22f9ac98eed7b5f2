"""Who may do what in an organisation: one table, one check. Pages, the CLI and the REST API all
call `check`; nothing else decides.

Roles, highest first: owner (everything, incl. transfer and deletion), admin (members, invitations,
product access, contacts, policies, usernames; never the owner, never ownership), editor and
member (no management). Someone who is not a member gets OrgNotFound for everything, so a
stranger cannot even learn that an organisation or its objects exist.
"""

from __future__ import annotations

from idp.orgs.errors import Forbidden, OrgNotFound
from idp.orgs.models import ROLES

OWNER_ONLY = frozenset({"owner"})
MANAGERS = frozenset({"owner", "admin"})
EVERYONE = frozenset(ROLES)

# action -> roles allowed to attempt it (rules about the target come after, in `check`)
PERMISSIONS: dict[str, frozenset[str]] = {
    "org.view": EVERYONE,
    "org.leave": EVERYONE - OWNER_ONLY,  # the owner transfers ownership first
    "org.update": MANAGERS,
    "org.delete": OWNER_ONLY,
    "members.view": MANAGERS,
    "members.invite": MANAGERS,
    "members.change_role": MANAGERS,
    "members.remove": MANAGERS,
    "ownership.transfer": OWNER_ONLY,
    "products.view": MANAGERS,
    "products.manage_access": MANAGERS,
    "contacts.view": MANAGERS,
    "contacts.manage": MANAGERS,
    "policies.view": MANAGERS,
    "policies.manage": MANAGERS,
    "usernames.create": MANAGERS,
    "audit.view": MANAGERS,
}
# Actions on another member, whose role and the role given are checked too.
_ON_MEMBERS = {"members.invite", "members.change_role", "members.remove", "usernames.create"}
# Actions on a member's licences (product access): nobody touches the licences of someone ranked
# above them, so an admin never changes or revokes the owner's. The owner manages their own.
# `new_role` is not an organisation role here: orgs/products.py checks the product role given
# with `may_give_product_role`.
_ON_LICENCES = {"products.manage_access"}


def rank(role: str) -> int:
    """0 for owner, 3 for member: lower is higher."""
    return ROLES.index(role)


def check(role: str | None, action: str, *, target_role: str | None = None,
          new_role: str | None = None) -> None:
    """Raise unless a member with `role` may do `action` (on a member holding `target_role`,
    giving the role `new_role`). `role` None is a stranger: OrgNotFound, never Forbidden."""
    if action not in PERMISSIONS:
        raise ValueError(f"unknown action {action!r}")
    if role is None:
        raise OrgNotFound()
    if role not in PERMISSIONS[action]:
        raise Forbidden()
    if action in _ON_LICENCES:
        if target_role is not None and rank(target_role) < rank(role):
            raise Forbidden()
        return
    if action not in _ON_MEMBERS:
        return
    # Nobody grants ownership except by transfer, and nobody but the owner touches the owner.
    if new_role == "owner" or (target_role == "owner"):
        raise Forbidden()
    # Nobody gives a role above their own (an admin may make admins, never owners).
    if new_role is not None and rank(new_role) < rank(role):
        raise Forbidden()
    # Nobody changes or removes someone above them.
    if target_role is not None and rank(target_role) < rank(role):
        raise Forbidden()


def allowed(role: str | None, action: str, **targets) -> bool:
    try:
        check(role, action, **targets)
    except (Forbidden, OrgNotFound):
        return False
    return True


def product_role_level(product_roles: list[str], role: str) -> int:
    """How high a product role is, on the organisation's scale (member 0, editor 1, admin 2,
    owner 3): roles that share the organisation's names are judged by those names, other roles
    by their position counted from the product's lowest role (the lowest is at member's level).
    A role not in the product is above everything."""
    top = len(ROLES) - 1
    if role in ROLES:
        return top - rank(role)
    if role in product_roles:
        return len(product_roles) - 1 - product_roles.index(role)
    return len(ROLES)


def may_give_product_role(role: str, product_roles: list[str], product_role: str) -> bool:
    """May a member with the organisation role `role` give (or change, or take away) a licence
    with `product_role`? Only at or below their own level: an admin gives admin-level roles and
    below, and a product's owner-level role (and anything ranked above it) only the owner gives.
    """
    if role == "owner":
        return True
    return product_role_level(product_roles, product_role) <= len(ROLES) - 1 - rank(role)

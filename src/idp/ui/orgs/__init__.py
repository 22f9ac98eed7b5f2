"""Organisation pages: /orgs (a person's organisations; create, leave) and /orgs/<handle>/...
(members and invitations, ownership, product access, contacts, policies, events).

One module per section; common.py holds the gate, CSRF and error mapping they share.
"""

from __future__ import annotations

from fastapi import APIRouter

from idp.ui.orgs import contacts, members, ownership, policies, products, shell

router = APIRouter(include_in_schema=False)
router.include_router(shell.router)
router.include_router(members.router)
router.include_router(ownership.router)
router.include_router(products.router)
router.include_router(contacts.router)
router.include_router(policies.router)

__all__ = ["router"]

"""The API's scopes: one per resource family and verb. A client is registered with the ones it
may ask for (`idp clients add --scope idp:orgs:write ...`) and gets them by client_credentials."""

from __future__ import annotations

SCOPES: dict[str, str] = {
    "idp:users:read": "Read accounts, their identifiers and status",
    "idp:users:write": "Create, change and disable accounts; temporary passwords and password resets",
    "idp:sessions:read": "List an account's sessions",
    "idp:sessions:write": "End an account's sessions",
    "idp:orgs:read": "Read organisations, members, invitations, ownership offers and contacts",
    "idp:orgs:write": "Change organisations, members, invitations, ownership and contacts",
    "idp:products:read": "Read products and product access",
    "idp:products:write": "Create products; grant and revoke product access",
    "idp:clients:read": "Read OAuth clients",
    "idp:clients:write": "Register, change and delete OAuth clients",
    "idp:audit:read": "Read the audit log",
    "idp:webhooks:read": "Read webhook subscriptions and their deliveries",
    "idp:webhooks:write": "Create, change and delete webhook subscriptions",
}

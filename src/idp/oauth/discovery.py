"""OpenID Connect Discovery 1.0 §3 / RFC 8414 §2 metadata: the same bytes for every request."""

from __future__ import annotations

import json

from idp.keys.service import SIGNING_ALGS
from idp.oauth.clients import AUTH_METHODS, GRANT_TYPES
from idp.oauth.authorization import ACR_VALUES
from idp.keys.service import ASSERTION_ALGS


def metadata(issuer: str, ui_locales: tuple[str, ...] = ("en",)) -> dict:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "introspection_endpoint": f"{issuer}/introspect",
        "revocation_endpoint": f"{issuer}/revoke",
        "end_session_endpoint": f"{issuer}/logout",
        "scopes_supported": ["openid", "profile", "email", "offline_access", "organization", "organization:*"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(SIGNING_ALGS),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "introspection_endpoint_auth_methods_supported": [m for m in AUTH_METHODS if m != "none"],
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid",
            "at_hash", "name", "given_name", "family_name", "locale", "updated_at", "email",
            "email_verified", "org", "org_role", "roles", "orgs",
        ],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "acr_values_supported": list(ACR_VALUES),
        "ui_locales_supported": list(ui_locales),
        "claims_locales_supported": ["en"],
        "display_values_supported": ["page"],
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": False,
    }


def metadata_bytes(issuer: str, ui_locales: tuple[str, ...] = ("en",)) -> bytes:
    return json.dumps(metadata(issuer, ui_locales), separators=(",", ":")).encode()

"""Token-endpoint grants: one module per grant type, registered here and nowhere else."""

from __future__ import annotations

from idp.oauth.grants import authorization_code, client_credentials, refresh_token
from idp.oauth.grants.base import TokenRequest

GRANTS = {
    module.GRANT_TYPE: module.handle
    for module in (authorization_code, refresh_token, client_credentials)
}

__all__ = ["GRANTS", "TokenRequest"]

"""One class per OAuth 2.0 / OpenID Connect error code, each quoting the clause that defines it.

Raised by the protocol services, rendered once: as JSON on the token-side endpoints, as a
redirect to the client or an error page on the authorization endpoint (oauth/responses.py).
"""

from __future__ import annotations


class OAuthError(Exception):
    error = "server_error"
    status_code = 400
    # True when the work done before the error must be committed anyway (e.g. revoking a token
    # family after a replayed refresh token is detected, then answering invalid_grant).
    keeps_changes = False

    def __init__(self, description: str | None = None, *, keeps_changes: bool = False) -> None:
        super().__init__(description or self.error)
        self.description = description
        self.keeps_changes = keeps_changes

    def as_dict(self) -> dict:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


class InvalidRequest(OAuthError):
    """RFC 6749 §5.2: "The request is missing a required parameter, includes an unsupported
    parameter value (other than grant type), repeats a parameter, ... or is otherwise malformed." """

    error = "invalid_request"


class InvalidClient(OAuthError):
    """RFC 6749 §5.2: "Client authentication failed (e.g., unknown client, no client authentication
    included, or unsupported authentication method)." Answered with 401."""

    error = "invalid_client"
    status_code = 401


class InvalidGrant(OAuthError):
    """RFC 6749 §5.2: "The provided authorization grant ... or refresh token is invalid, expired,
    revoked, does not match the redirection URI used in the authorization request, or was issued
    to another client." """

    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    """RFC 6749 §5.2: "The authenticated client is not authorized to use this authorization grant type." """

    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    """RFC 6749 §5.2: "The authorization grant type is not supported by the authorization server." """

    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    """RFC 6749 §4.1.2.1 / §5.2: "The requested scope is invalid, unknown, or malformed." """

    error = "invalid_scope"


class UnsupportedResponseType(OAuthError):
    """RFC 6749 §4.1.2.1: "The authorization server does not support obtaining an authorization
    code using this method." """

    error = "unsupported_response_type"


class AccessDenied(OAuthError):
    """RFC 6749 §4.1.2.1: "The resource owner or authorization server denied the request." """

    error = "access_denied"


class LoginRequired(OAuthError):
    """OIDC Core §3.1.2.6: "The Authorization Server requires End-User authentication." """

    error = "login_required"


class ConsentRequired(OAuthError):
    """OIDC Core §3.1.2.6: "The Authorization Server requires End-User consent." """

    error = "consent_required"


class InteractionRequired(OAuthError):
    """OIDC Core §3.1.2.6: "The Authorization Server requires End-User interaction of some form to proceed." """

    error = "interaction_required"


class AccountSelectionRequired(OAuthError):
    """OIDC Core §3.1.2.6: "The End-User is REQUIRED to select a session at the Authorization
    Server." Used when prompt=none and the person must choose one of their organisations."""

    error = "account_selection_required"


class RequestNotSupported(OAuthError):
    """OIDC Core §3.1.2.6: "The OP does not support use of the request parameter." """

    error = "request_not_supported"


class RequestUriNotSupported(OAuthError):
    """OIDC Core §3.1.2.6: "The OP does not support use of the request_uri parameter." """

    error = "request_uri_not_supported"


class InvalidToken(OAuthError):
    """RFC 6750 §3.1: "The access token provided is expired, revoked, malformed, or invalid." 401."""

    error = "invalid_token"
    status_code = 401


class InsufficientScope(OAuthError):
    """RFC 6750 §3.1: "The request requires higher privileges than provided by the access token." 403."""

    error = "insufficient_scope"
    status_code = 403


class TemporarilyUnavailable(OAuthError):
    """RFC 6749 §4.1.2.1: the server "is currently unable to handle the request due to a temporary
    overloading or maintenance". Used when the database is unreachable: never "invalid credentials"."""

    error = "temporarily_unavailable"
    status_code = 503

"""idp: a standalone OAuth 2.0 / OpenID Connect identity provider."""

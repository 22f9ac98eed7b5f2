"""Second factors: TOTP authenticator apps and recovery codes (service level; pages come later)."""

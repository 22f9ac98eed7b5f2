"""One-time codes: one service issues and verifies every code, whatever it is for."""

from idp.otp.service import (
    CodeExpired, CodeInvalid, CodeProblem, IssuedCode, OtpService, Purpose, ResendTooSoon,
    TooManyAttempts,
)

__all__ = [
    "CodeExpired", "CodeInvalid", "CodeProblem", "IssuedCode", "OtpService", "Purpose",
    "ResendTooSoon", "TooManyAttempts",
]

"""Refusals of the organisation services. Pages, CLI and API map them to 404/403/409/400."""

from __future__ import annotations


class OrgError(Exception):
    """A refusal with a message fit to show (an English source string; pages translate it)."""

    status = 400

    def __init__(self, message: str = "the request cannot be done") -> None:
        super().__init__(message)
        self.message = message


class OrgNotFound(OrgError):
    """No such organisation or object, or the actor is not a member: the same answer, so a
    stranger cannot tell the two apart."""

    status = 404

    def __init__(self, message: str = "not found") -> None:
        super().__init__(message)


class Forbidden(OrgError):
    """A member whose role does not allow this."""

    status = 403

    def __init__(self, message: str = "your role in this organisation does not allow this") -> None:
        super().__init__(message)


class Conflict(OrgError):
    """The state does not allow it now (the owner leaving, a handle taken, a spent offer)."""

    status = 409

"""Field types every API body and path shares. Strings are bounded and free of control
characters (PostgreSQL text cannot hold NUL; logs and pages must not get raw newlines), so bad
input is a 422, never a database error."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import StringConstraints

NO_CONTROLS = r"^[^\x00-\x1f\x7f]*$"

# A resource id or handle in a path: our ids are base64url; handles, client ids and usernames use
# letters, digits, '-', '_', '.', '@'.
ResourceId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$",
                                 description="The resource's id (or handle where the resource has one)")]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_CONTROLS)]
ShortText = Annotated[str, StringConstraints(max_length=200, pattern=NO_CONTROLS)]
Email = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320,
                                         pattern=r"^[^\s@\x00-\x1f\x7f]+@[^\s@\x00-\x1f\x7f]+$")]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=32,
                                         pattern=r"^[+0-9 ()./-]+$")]
Locale = Annotated[str, StringConstraints(min_length=2, max_length=16, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$")]

"""Small things every API router needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from idp.services import Services


def services_of(request: Request) -> Services:
    return request.app.state.services

"""The API's OpenAPI 3.1 document and /docs (stub: filled in by the OpenAPI work)."""

from __future__ import annotations

from fastapi import FastAPI


def install_docs(app: FastAPI) -> None:
    """Serve /openapi.json and /docs for the /api/v1 routes."""

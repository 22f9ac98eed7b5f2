"""Discovery and JWKS: the same bytes for every request, against a bare FastAPI route returning
the bytes the idp served at start-up."""

from __future__ import annotations

from load import paired, wrk
from table import Row, ratio_row


def _row(bench, what: str, ours_path: str, floor_path: str) -> list[Row]:
    def load(url: str):
        return lambda seconds: wrk(url, seconds=seconds, connections=bench.connections)

    ours, floor = paired(load(bench.idp.url + ours_path), load(bench.baseline.url + floor_path), bench.seconds)
    return [ratio_row(what, ours, floor, 0.80)]


def discovery(bench) -> list[Row]:
    return _row(bench, "discovery", "/.well-known/openid-configuration", "/discovery")


def jwks(bench) -> list[Row]:
    return _row(bench, "JWKS", "/jwks", "/jwks")

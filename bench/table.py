"""A row of the results table and the table itself, printed as Markdown (README-ready)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    what: str
    idp: str
    baseline: str = "—"
    ratio: str = "—"
    target: str = "—"
    ok: bool | None = None  # None: a figure to read, with no target

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else "ok" if self.ok else "BELOW"


def ratio_row(what: str, ours: float, floor: float, target: float, unit: str = "/s") -> Row:
    ratio = ours / floor if floor else 0.0
    return Row(what, f"{ours:,.0f}{unit}", f"{floor:,.0f}{unit}", f"{ratio:.2f}", f"≥ {target:.2f}",
               ratio >= target)


def render(rows: list[Row]) -> str:
    header = ("what", "idp", "baseline", "ratio", "target", "")
    cells = [header, *[(r.what, r.idp, r.baseline, r.ratio, r.target, r.verdict) for r in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)

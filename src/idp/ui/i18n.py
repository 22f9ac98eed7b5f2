"""Page texts through gettext catalogues (Babel). Adding a language is adding a .po file.

Catalogues live in ui/locales/<lang>/LC_MESSAGES/messages.po and are compiled in memory at
start-up, so there is no build step; `make messages` re-extracts messages.pot from the templates.
"""

from __future__ import annotations

import gettext
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).parent / "locales"


def N_(message: str) -> str:
    """Marks a page text for extraction (`make messages`); it is translated where it is shown."""
    return message


@lru_cache
def available() -> tuple[str, ...]:
    found = sorted(p.parent.parent.name for p in LOCALES_DIR.glob("*/LC_MESSAGES/messages.po"))
    return tuple(found) or ("en",)


@lru_cache
def translations(locale: str) -> gettext.NullTranslations:
    path = LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as source:
        catalog = read_po(source, locale=locale)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def negotiate(ui_locales: str | None, accept_language: str | None, default: str = "en") -> str:
    """First of the `ui_locales` (OIDC Core §3.1.2.1) we have, else the best Accept-Language."""
    have = available()
    for tag in (ui_locales or "").split():
        base = tag.split("-")[0].lower()
        if base in have:
            return base
    weighted = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        weighted.append((-weight, index, tag.split("-")[0].lower()))
    for _, _, base in sorted(weighted):
        if base in have:
            return base
    return default if default in have else have[0]

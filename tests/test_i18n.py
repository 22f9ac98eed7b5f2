"""Page languages: negotiation (ui_locales, then Accept-Language, then English), translated pages,
and the catalogues themselves (same messages as messages.pot, placeholders kept, nothing missing).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from tests.rp import PASSWORD, form_field

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "src" / "idp" / "ui" / "locales"
LANGUAGES = ("en", "fi", "sv", "hu")
TRANSLATED = ("fi", "sv", "hu")  # English is the source language: its msgstrs may stay empty

# One conversion specification of Python %-formatting: %(client)s, %s, %d, %%.
PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[#0 +-]*\d*(?:\.\d+)?[a-zA-Z%]")

SIGN_IN = {"en": "Sign in", "fi": "Kirjaudu sisään", "sv": "Logga in", "hu": "Bejelentkezés"}
PASSWORD_LABEL = {"en": "Password", "fi": "Salasana", "sv": "Lösenord", "hu": "Jelszó"}


def read_catalog(path: Path, locale: str | None = None):
    with path.open("rb") as source:
        return read_po(source, locale=locale)


def msgids(catalog) -> set[str]:
    return {message.id for message in catalog if message.id}


def lang_of(html: str) -> str:
    match = re.search(r'<html lang="([^"]*)"', html)
    assert match, "no <html lang> in page"
    return match.group(1)


async def open_login_page(http, rp, client, *, headers: dict | None = None, **extra):
    if headers:
        http.headers.update(headers)
    reply = await rp.authorize(http, client, **extra)
    assert reply.status_code in (302, 303) and reply.headers["location"].startswith("/login?flow="), reply.text
    page = await http.get(reply.headers["location"])
    assert page.status_code == 200, page.text
    return page


# ---- pages ---------------------------------------------------------------------------------------


async def test_login_page_is_finnish_with_ui_locales_fi(http, rp):
    client = await rp.register(name="Kirjasto")
    page = await open_login_page(http, rp, client, ui_locales="fi")

    assert lang_of(page.text) == "fi"
    assert "<title>Kirjaudu sisään</title>" in page.text
    assert "<h1>Kirjaudu sisään</h1>" in page.text
    assert "jatkaaksesi palveluun Kirjasto" in page.text  # %(client)s filled in
    assert ">Sähköpostiosoite tai puhelinnumero</label>" in page.text and ">Jatka</button>" in page.text
    assert "Sign in" not in page.text and "Continue" not in page.text


async def test_login_page_is_swedish_with_the_first_supported_of_ui_locales(http, rp):
    client = await rp.register(name="Biblioteket")
    page = await open_login_page(http, rp, client, ui_locales="sv-SE en")

    assert lang_of(page.text) == "sv"
    assert "<h1>Logga in</h1>" in page.text
    assert "för att fortsätta till Biblioteket" in page.text
    assert ">Fortsätt</button>" in page.text


async def test_login_page_is_hungarian_from_accept_language(http, rp):
    client = await rp.register(name="Könyvtár")
    page = await open_login_page(http, rp, client, headers={"Accept-Language": "hu-HU"})

    assert lang_of(page.text) == "hu"
    assert "<h1>Bejelentkezés</h1>" in page.text
    assert "a következő használatához: Könyvtár" in page.text
    assert ">Tovább</button>" in page.text


async def test_login_page_is_english_by_default(http, rp):
    client = await rp.register(name="Library")
    page = await open_login_page(http, rp, client)

    assert lang_of(page.text) == "en"
    assert "<h1>Sign in</h1>" in page.text and "to continue to Library" in page.text


@pytest.mark.parametrize(("ui_locales", "accept_language", "expected"), [
    ("fi", "sv-SE,sv;q=0.9", "fi"),             # ui_locales wins over Accept-Language
    ("de-DE", "sv-SE,sv;q=0.9,en;q=0.5", "sv"),  # none of ui_locales supported: Accept-Language
    (None, "de, en;q=0.4, hu;q=0.8", "hu"),      # by quality, not by position
    ("de", "de-AT, fr", "en"),                  # nothing supported: the default
])
async def test_negotiation_order(http, rp, ui_locales, accept_language, expected):
    client = await rp.register()
    page = await open_login_page(http, rp, client, headers={"Accept-Language": accept_language},
                                 ui_locales=ui_locales)

    assert lang_of(page.text) == expected
    assert f"<h1>{SIGN_IN[expected]}</h1>" in page.text


async def test_failed_login_message_is_translated(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    page = await open_login_page(http, rp, client, ui_locales="sv")

    reply = await http.post("/login", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
        "username": email, "password": PASSWORD + " but wrong",
    })

    assert reply.status_code == 401
    assert "Fel e-postadress, telefonnummer eller lösenord." in reply.text  # LOGIN_FAILED in ui/login.py
    assert "Incorrect email, phone number or password." not in reply.text


async def test_consent_page_translates_scope_descriptions(http, rp):
    client = await rp.register(name="Könyvtár", first_party=False)
    email, _ = await rp.user()
    page = await open_login_page(http, rp, client, ui_locales="hu", scope="openid profile email")
    reply = await rp.login(http, f"/login?flow={form_field(page.text, 'flow')}", email)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/consent?flow="), reply.text

    consent = await http.get(reply.headers["location"])

    assert consent.status_code == 200, consent.text
    assert lang_of(consent.text) == "hu"
    assert "Engedélyezi, hogy Könyvtár hozzáférjen a fiókjához?" in consent.text
    for text in ("Személyazonosságának megismerése", "Nevének és profiljának megtekintése",
                 "E-mail-címének megtekintése"):  # SCOPE_TEXTS values
        assert f"<li>{text}</li>" in consent.text
    assert ">Engedélyezés</button>" in consent.text and ">Elutasítás</button>" in consent.text


@pytest.mark.parametrize(("accept_language", "heading", "message"), [
    ("fi-FI,fi;q=0.9", "Jokin meni vikaan", "tuntematon sovellus"),
    ("sv", "Något gick fel", "okänd app"),
    ("hu-HU", "Hiba történt", "ismeretlen alkalmazás"),
    (None, "Something went wrong", "unknown client"),
])
async def test_unknown_client_error_page_is_translated_from_accept_language(
        http, rp, accept_language, heading, message):
    client = replace(await rp.register(), client_id="no-such-client")
    if accept_language:
        http.headers["Accept-Language"] = accept_language

    reply = await rp.authorize(http, client)

    assert reply.status_code == 400, reply.text
    assert "location" not in reply.headers  # never redirected to an unverified redirect_uri
    assert f"<h1>{heading}</h1>" in reply.text
    assert f'<p role="alert">{message}</p>' in reply.text


# ---- catalogues ----------------------------------------------------------------------------------


def test_every_language_has_a_catalogue():
    for lang in LANGUAGES:
        assert (LOCALES / lang / "LC_MESSAGES" / "messages.po").is_file(), lang


@pytest.mark.parametrize("lang", LANGUAGES)
def test_catalogue_has_the_same_messages_as_the_template(lang):
    template = read_catalog(LOCALES / "messages.pot")
    catalog = read_catalog(LOCALES / lang / "LC_MESSAGES" / "messages.po", lang)

    missing, extra = msgids(template) - msgids(catalog), msgids(catalog) - msgids(template)
    assert not missing and not extra, f"{lang}: missing {sorted(missing)}, not in messages.pot {sorted(extra)}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_catalogue_headers(lang):
    catalog = read_catalog(LOCALES / lang / "LC_MESSAGES" / "messages.po", lang)
    headers = dict(catalog.mime_headers)

    assert str(catalog.locale) == lang and headers["Language"] == lang
    assert headers["Content-Type"].lower() == "text/plain; charset=utf-8"
    assert re.fullmatch(r"nplurals=\d+; plural=.+;", headers["Plural-Forms"])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_translations_keep_the_placeholders_of_their_msgid(lang):
    catalog = read_catalog(LOCALES / lang / "LC_MESSAGES" / "messages.po", lang)
    wrong = []
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        expected = sorted(PLACEHOLDER.findall(ids[-1]))
        for string in strings:
            if string and sorted(PLACEHOLDER.findall(string)) != expected:
                wrong.append((message.id, string))
    assert not wrong, f"{lang}: placeholders changed in {wrong}"
    # Babel's own checks (python-format flags, plural counts) agree.
    assert [(m.id, errors) for m, errors in catalog.check()] == []


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_message_is_translated(lang):
    catalog = read_catalog(LOCALES / lang / "LC_MESSAGES" / "messages.po", lang)

    untranslated = [m.id for m in catalog if m.id and not all(
        m.string if isinstance(m.string, tuple) else (m.string,))]
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]  # fuzzy entries are not used at run time
    assert not untranslated and not fuzzy, f"{lang}: untranslated {untranslated}, fuzzy {fuzzy}"


def test_messages_pot_is_up_to_date_with_the_sources():
    """A page text added without `make messages` would silently stay in English."""
    env = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run(["bash", str(ROOT / "scripts" / "extract-messages.sh"), "--check"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

"""Message texts per kind and language: plain-text email (subject, body) and SMS.

Every code message says the code is not a password and must never be given to anyone: people are
talked out of codes on the phone far more often than codes are guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

LOCALES = ("en", "fi", "sv", "hu")

# kind -> locale -> (subject, the sentence before the code)
_INTROS: dict[str, dict[str, tuple[str, str]]] = {
    "verify_email": {
        "en": ("Confirm your email address", "Use this code to confirm your email address:"),
        "fi": ("Vahvista sähköpostiosoitteesi", "Vahvista sähköpostiosoitteesi tällä koodilla:"),
        "sv": ("Bekräfta din e-postadress", "Bekräfta din e-postadress med den här koden:"),
        "hu": ("Erősítse meg e-mail-címét", "E-mail-címe megerősítéséhez használja ezt a kódot:"),
    },
    "verify_phone": {
        "en": ("Confirm your phone number", "Use this code to confirm your phone number:"),
        "fi": ("Vahvista puhelinnumerosi", "Vahvista puhelinnumerosi tällä koodilla:"),
        "sv": ("Bekräfta ditt telefonnummer", "Bekräfta ditt telefonnummer med den här koden:"),
        "hu": ("Erősítse meg telefonszámát", "Telefonszáma megerősítéséhez használja ezt a kódot:"),
    },
    "login": {
        "en": ("Your sign-in code", "Use this code to sign in:"),
        "fi": ("Kirjautumiskoodisi", "Kirjaudu sisään tällä koodilla:"),
        "sv": ("Din inloggningskod", "Logga in med den här koden:"),
        "hu": ("Bejelentkezési kód", "A bejelentkezéshez használja ezt a kódot:"),
    },
    "second_factor": {
        "en": ("Your verification code", "Use this code to finish signing in:"),
        "fi": ("Vahvistuskoodisi", "Viimeistele kirjautuminen tällä koodilla:"),
        "sv": ("Din verifieringskod", "Slutför inloggningen med den här koden:"),
        "hu": ("Ellenőrző kód", "A bejelentkezés befejezéséhez használja ezt a kódot:"),
    },
    "password_reset": {
        "en": ("Your password reset code", "Use this code to choose a new password:"),
        "fi": ("Salasanan vaihtokoodi", "Valitse uusi salasana tällä koodilla:"),
        "sv": ("Kod för att återställa lösenordet", "Välj ett nytt lösenord med den här koden:"),
        "hu": ("Jelszó-visszaállítási kód", "Új jelszó megadásához használja ezt a kódot:"),
    },
    "mobile_activation": {
        "en": ("Activate the mobile app", "Use this code to activate the mobile app:"),
        "fi": ("Mobiilisovelluksen aktivointi", "Aktivoi mobiilisovellus tällä koodilla:"),
        "sv": ("Aktivera mobilappen", "Aktivera mobilappen med den här koden:"),
        "hu": ("A mobilalkalmazás aktiválása", "A mobilalkalmazás aktiválásához használja ezt a kódot:"),
    },
}

# locale -> the rest of an email body, and the SMS text
_EMAIL_BODY = {
    "en": "{intro}\n\n    {code}\n\nThe code is valid for {minutes} minutes.\n\n"
          "It is not a password: never give it to anyone, even someone who says they are from us.\n"
          "If you did not ask for this code, you can ignore this message.\n",
    "fi": "{intro}\n\n    {code}\n\nKoodi on voimassa {minutes} minuuttia.\n\n"
          "Koodi ei ole salasana: älä koskaan anna sitä kenellekään, vaikka hän sanoisi "
          "olevansa meiltä.\nJos et pyytänyt koodia, voit jättää tämän viestin huomiotta.\n",
    "sv": "{intro}\n\n    {code}\n\nKoden gäller i {minutes} minuter.\n\n"
          "Koden är inte ett lösenord: ge den aldrig till någon, inte ens till någon som säger "
          "att hen ringer från oss.\nOm du inte har bett om koden kan du bortse från det här "
          "meddelandet.\n",
    "hu": "{intro}\n\n    {code}\n\nA kód {minutes} percig érvényes.\n\n"
          "A kód nem jelszó: soha ne adja meg senkinek, akkor sem, ha valaki a nevünkben kéri.\n"
          "Ha nem Ön kérte a kódot, hagyja figyelmen kívül ezt az üzenetet.\n",
}

_SMS = {
    "en": "Your code is {code}. It is not a password: never give it to anyone. "
          "Valid for {minutes} min.",
    "fi": "Koodisi on {code}. Se ei ole salasana: älä koskaan anna sitä kenellekään. "
          "Voimassa {minutes} min.",
    "sv": "Din kod är {code}. Den är inte ett lösenord: ge den aldrig till någon. "
          "Gäller i {minutes} min.",
    "hu": "A kódja: {code}. Ez nem jelszó, soha ne adja meg senkinek. "
          "{minutes} percig érvényes.",
}

# Notices carry no code: kind -> locale -> (subject, email body, SMS text)
_NOTICES: dict[str, dict[str, tuple[str, str, str]]] = {
    "password_changed": {
        "en": ("Your password was changed",
               ("The password of your account was just changed, and every device signed in to "
               "your account was signed out.\n\nIf it was you, there is nothing else to do.\n"
               "If it was not you, reset your password at once and contact us.\n"),
               "Your password was just changed. If it was not you, reset it at once."),
        "fi": ("Salasanasi vaihdettiin",
               ("Tilisi salasana vaihdettiin juuri, ja kaikki tiliisi kirjautuneet laitteet "
               "kirjattiin ulos.\n\nJos teit sen itse, sinun ei tarvitse tehdä muuta.\n"
               "Jos et tehnyt sitä itse, vaihda salasanasi heti ja ota meihin yhteyttä.\n"),
               "Salasanasi vaihdettiin juuri. Jos et tehnyt sitä itse, vaihda se heti."),
        "sv": ("Ditt lösenord har ändrats",
               ("Lösenordet till ditt konto ändrades nyss, och alla enheter som var inloggade på "
               "kontot loggades ut.\n\nOm det var du behöver du inte göra något mer.\n"
               "Om det inte var du, återställ lösenordet genast och kontakta oss.\n"),
               "Ditt lösenord ändrades nyss. Om det inte var du, återställ det genast."),
        "hu": ("Megváltozott a jelszava",
               ("Fiókja jelszava az imént megváltozott, és minden eszközön, ahol be volt "
               "jelentkezve, kijelentkeztettük.\n\nHa Ön volt, nincs más teendője.\n"
               "Ha nem Ön volt, azonnal állítsa vissza a jelszavát, és lépjen kapcsolatba velünk.\n"),
               "A jelszava az imént megváltozott. Ha nem Ön volt, azonnal állítsa vissza."),
    },
}

KINDS = tuple(_INTROS)  # the kinds that carry a code
NOTICE_KINDS = tuple(_NOTICES)  # the kinds that carry none


class UnknownTemplate(ValueError):
    """No template for this message kind."""


@dataclass(frozen=True)
class Rendered:
    subject: str | None  # None for SMS
    body: str


def pick_locale(locale: str | None) -> str:
    """`fi-FI` → `fi`; a language we have no texts for → English."""
    language = (locale or "en").replace("_", "-").split("-")[0].lower()
    return language if language in LOCALES else "en"


def render(channel: str, kind: str, locale: str, params: dict) -> Rendered:
    if kind in _NOTICES:
        subject, body, sms = _NOTICES[kind][pick_locale(locale)]
        return Rendered(None, sms) if channel == "sms" else Rendered(subject, body)
    if kind not in _INTROS:
        raise UnknownTemplate(kind)
    locale = pick_locale(locale)
    subject, intro = _INTROS[kind][locale]
    values = {"minutes": 10, **params}
    if channel == "sms":
        return Rendered(None, _SMS[locale].format(**values))
    return Rendered(subject, _EMAIL_BODY[locale].format(intro=intro, **values))

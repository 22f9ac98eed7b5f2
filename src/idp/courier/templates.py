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

# Notices carry no code: kind -> locale -> (subject, email body, SMS text). Their texts are
# format strings: a notice that needs values (the temporary password) names them in _NOTICE_PARAMS,
# and render refuses to build it without them.
_NOTICES: dict[str, dict[str, tuple[str, str, str]]] = {
    "password_changed": {
        "en": ("Your password was changed",
               ("The password of your account was just changed.\n\n"
               "If it was you, there is nothing else to do.\n"
               "If it was not you, reset your password at once and contact us.\n"),
               "Your password was just changed. If it was not you, reset it at once."),
        "fi": ("Salasanasi vaihdettiin",
               ("Tilisi salasana vaihdettiin juuri.\n\n"
               "Jos teit sen itse, sinun ei tarvitse tehdä muuta.\n"
               "Jos et tehnyt sitä itse, vaihda salasanasi heti ja ota meihin yhteyttä.\n"),
               "Salasanasi vaihdettiin juuri. Jos et tehnyt sitä itse, vaihda se heti."),
        "sv": ("Ditt lösenord har ändrats",
               ("Lösenordet till ditt konto ändrades nyss.\n\n"
               "Om det var du behöver du inte göra något mer.\n"
               "Om det inte var du, återställ lösenordet genast och kontakta oss.\n"),
               "Ditt lösenord ändrades nyss. Om det inte var du, återställ det genast."),
        "hu": ("Megváltozott a jelszava",
               ("Fiókja jelszava az imént megváltozott.\n\n"
               "Ha Ön volt, nincs más teendője.\n"
               "Ha nem Ön volt, azonnal állítsa vissza a jelszavát, és lépjen kapcsolatba velünk.\n"),
               "A jelszava az imént megváltozott. Ha nem Ön volt, azonnal állítsa vissza."),
    },
    "registration_exists": {
        "en": ("You already have an account",
               ("Someone just tried to create a new account with this email address, but it "
               "already belongs to an account.\n\nIf it was you, sign in instead, or reset your "
               "password if you have forgotten it.\nIf it was not you, you can ignore this "
               "message: nothing was changed.\n"),
               "Someone tried to create an account with this phone number, which already has one. "
               "If it was you, sign in or reset your password. If not, ignore this message."),
        "fi": ("Sinulla on jo tili",
               ("Joku yritti juuri luoda uuden tilin tällä sähköpostiosoitteella, mutta osoite on "
               "jo käytössä tililläsi.\n\nJos teit sen itse, kirjaudu sisään tai vaihda "
               "salasanasi, jos olet unohtanut sen.\nJos et tehnyt sitä itse, voit jättää tämän "
               "viestin huomiotta: mitään ei muutettu.\n"),
               "Joku yritti luoda tilin tällä puhelinnumerolla, mutta sillä on jo tili. Jos teit "
               "sen itse, kirjaudu sisään tai vaihda salasanasi. Muuten voit jättää viestin huomiotta."),
        "sv": ("Du har redan ett konto",
               ("Någon försökte nyss skapa ett nytt konto med den här e-postadressen, men den hör "
               "redan till ett konto.\n\nOm det var du kan du logga in i stället, eller återställa "
               "lösenordet om du har glömt det.\nOm det inte var du kan du bortse från det här "
               "meddelandet: ingenting har ändrats.\n"),
               "Någon försökte skapa ett konto med det här telefonnumret, som redan har ett konto. "
               "Om det var du, logga in eller återställ lösenordet. Annars kan du bortse från "
               "meddelandet."),
        "hu": ("Már van fiókja",
               ("Valaki az imént új fiókot próbált létrehozni ezzel az e-mail-címmel, de ez a cím "
               "már egy meglévő fiókhoz tartozik.\n\nHa Ön volt, jelentkezzen be, vagy ha "
               "elfelejtette a jelszavát, állítsa vissza.\nHa nem Ön volt, hagyja figyelmen kívül "
               "ezt az üzenetet: semmi sem változott.\n"),
               "Valaki fiókot próbált létrehozni ezzel a telefonszámmal, de ahhoz már tartozik "
               "fiók. Ha Ön volt, jelentkezzen be, vagy állítsa vissza a jelszavát. Ha nem, hagyja "
               "figyelmen kívül ezt az üzenetet."),
    },
    "temporary_password": {
        "en": ("Your temporary password",
               ("An administrator has set a temporary password for your account:\n\n"
               "    {password}\n\nIt works once, for {duration}, and you must choose a new "
               "password when you sign in with it.\n\nIt is not a code to give anyone: never "
               "tell it to anyone, even someone who says they are from us.\nIf you did not "
               "expect this message, contact us.\n"),
               "Your temporary password is {password}. It works once, for {duration}, and you "
               "must change it when you sign in. Never give it to anyone."),
        "fi": ("Väliaikainen salasanasi",
               ("Ylläpitäjä on asettanut tilillesi väliaikaisen salasanan:\n\n"
               "    {password}\n\nSalasana toimii kerran ja on voimassa {duration} ajan. Sinun "
               "on vaihdettava se, kun kirjaudut sillä sisään.\n\nSalasana ei ole koodi, jonka "
               "voi antaa eteenpäin: älä koskaan kerro sitä kenellekään, vaikka hän sanoisi "
               "olevansa meiltä.\nJos et odottanut tätä viestiä, ota meihin yhteyttä.\n"),
               "Väliaikainen salasanasi on {password}. Se toimii kerran, {duration} ajan, ja se on "
               "vaihdettava kirjautuessa. Älä koskaan anna sitä kenellekään."),
        "sv": ("Ditt tillfälliga lösenord",
               ("En administratör har angett ett tillfälligt lösenord för ditt konto:\n\n"
               "    {password}\n\nLösenordet kan användas en gång och gäller i {duration}. Du "
               "måste byta det när du loggar in med det.\n\nDet är ingen kod som du ska lämna "
               "ut: ge det aldrig till någon, inte ens till någon som säger att hen ringer från "
               "oss.\nOm du inte väntade dig det här meddelandet, kontakta oss.\n"),
               "Ditt tillfälliga lösenord är {password}. Det kan användas en gång och gäller i "
               "{duration}. Du måste byta det när du loggar in. Ge det aldrig till någon."),
        "hu": ("Ideiglenes jelszava",
               ("Egy rendszergazda ideiglenes jelszót állított be a fiókjához:\n\n"
               "    {password}\n\nA jelszó egyszer használható, {duration} át érvényes, és "
               "az első bejelentkezéskor meg kell változtatnia.\n\nEz nem olyan kód, amelyet "
               "bárkinek megadhat: soha ne árulja el senkinek, akkor sem, ha valaki a nevünkben "
               "kéri.\nHa nem számított erre az üzenetre, lépjen kapcsolatba velünk.\n"),
               "Ideiglenes jelszava: {password}. Egyszer használható, {duration} át érvényes, és "
               "bejelentkezéskor meg kell változtatnia. Soha ne adja meg senkinek."),
    },
}

# Security notices share one ending: what to do if the change was not the person's own.
_NOT_YOU = {
    "en": ("\n\nIf it was you, there is nothing else to do.\n"
           "If it was not you, reset your password at once and contact us.\n",
           " If it was not you, reset your password at once and contact us."),
    "fi": ("\n\nJos teit sen itse, sinun ei tarvitse tehdä muuta.\n"
           "Jos et tehnyt sitä itse, vaihda salasanasi heti ja ota meihin yhteyttä.\n",
           " Jos et tehnyt sitä itse, vaihda salasanasi heti ja ota meihin yhteyttä."),
    "sv": ("\n\nOm det var du behöver du inte göra något mer.\n"
           "Om det inte var du, återställ lösenordet genast och kontakta oss.\n",
           " Om det inte var du, återställ lösenordet genast och kontakta oss."),
    "hu": ("\n\nHa Ön volt, nincs más teendője.\n"
           "Ha nem Ön volt, azonnal állítsa vissza a jelszavát, és lépjen kapcsolatba velünk.\n",
           " Ha nem Ön volt, azonnal állítsa vissza a jelszavát, és lépjen kapcsolatba velünk."),
}

# kind -> locale -> (subject, what happened: one sentence for the email and the SMS alike)
_SECURITY_CHANGES: dict[str, dict[str, tuple[str, str]]] = {
    "factor_added": {
        "en": ("A sign-in method was added to your account",
               "A second factor for signing in was just added to your account."),
        "fi": ("Tiliisi lisättiin kirjautumistapa",
               "Tiliisi lisättiin juuri uusi kaksivaiheisen tunnistautumisen menetelmä."),
        "sv": ("En inloggningsmetod har lagts till på ditt konto",
               "En ny metod för tvåstegsverifiering har nyss lagts till på ditt konto."),
        "hu": ("Új bejelentkezési mód a fiókjában",
               "Fiókjához az imént új kétlépcsős azonosítási módot adtak hozzá."),
    },
    "factor_removed": {
        "en": ("A sign-in method was removed from your account",
               "A second factor for signing in was just removed from your account."),
        "fi": ("Tililtäsi poistettiin kirjautumistapa",
               "Tililtäsi poistettiin juuri kaksivaiheisen tunnistautumisen menetelmä."),
        "sv": ("En inloggningsmetod har tagits bort från ditt konto",
               "En metod för tvåstegsverifiering har nyss tagits bort från ditt konto."),
        "hu": ("Bejelentkezési módot távolítottak el a fiókjából",
               "Fiókjából az imént eltávolítottak egy kétlépcsős azonosítási módot."),
    },
    "identifier_added": {
        "en": ("A contact detail was added to your account",
               "An email address or phone number was just added to your account."),
        "fi": ("Tiliisi lisättiin yhteystieto",
               "Tiliisi lisättiin juuri sähköpostiosoite tai puhelinnumero."),
        "sv": ("En kontaktuppgift har lagts till på ditt konto",
               "En e-postadress eller ett telefonnummer har nyss lagts till på ditt konto."),
        "hu": ("Új elérhetőség a fiókjában",
               "Fiókjához az imént egy e-mail-címet vagy telefonszámot adtak hozzá."),
    },
    "identifier_removed": {
        "en": ("A contact detail was removed from your account",
               "An email address or phone number was just removed from your account."),
        "fi": ("Tililtäsi poistettiin yhteystieto",
               "Tililtäsi poistettiin juuri sähköpostiosoite tai puhelinnumero."),
        "sv": ("En kontaktuppgift har tagits bort från ditt konto",
               "En e-postadress eller ett telefonnummer har nyss tagits bort från ditt konto."),
        "hu": ("Elérhetőséget távolítottak el a fiókjából",
               "Fiókjából az imént eltávolítottak egy e-mail-címet vagy telefonszámot."),
    },
}
for _kind, _texts in _SECURITY_CHANGES.items():
    _NOTICES[_kind] = {locale: (subject, what + _NOT_YOU[locale][0], what + _NOT_YOU[locale][1])
                       for locale, (subject, what) in _texts.items()}

# The values a notice cannot be rendered without.
_NOTICE_PARAMS: dict[str, tuple[str, ...]] = {"temporary_password": ("password", "hours")}


def _duration(locale: str, hours: int) -> str:
    """"24 hours", "1 timme": the form the notice sentence needs (Finnish "{n} tunnin ajan" and
    Hungarian "{n} órán át" take one form after any number; English and Swedish do not)."""
    unit = {"en": ("hour", "hours"), "sv": ("timme", "timmar"),
            "fi": ("tunnin", "tunnin"), "hu": ("órán", "órán")}[locale]
    return f"{hours} {unit[0] if hours == 1 else unit[1]}"


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
        return _render_notice(channel, kind, pick_locale(locale), params)
    if kind not in _INTROS:
        raise UnknownTemplate(kind)
    locale = pick_locale(locale)
    subject, intro = _INTROS[kind][locale]
    values = {"minutes": 10, **params}
    if channel == "sms":
        return Rendered(None, _SMS[locale].format(**values))
    return Rendered(subject, _EMAIL_BODY[locale].format(intro=intro, **values))


def _render_notice(channel: str, kind: str, locale: str, params: dict) -> Rendered:
    subject, body, sms = _NOTICES[kind][locale]
    required = _NOTICE_PARAMS.get(kind, ())
    if not required:
        return Rendered(None, sms) if channel == "sms" else Rendered(subject, body)
    missing = [name for name in required if name not in params]
    if missing:
        raise ValueError(f"the {kind} notice needs {', '.join(missing)}")
    values = {name: params[name] for name in required}
    if "hours" in values:
        values["duration"] = _duration(locale, int(values["hours"]))
    if channel == "sms":
        return Rendered(None, sms.format(**values))
    return Rendered(subject, body.format(**values))

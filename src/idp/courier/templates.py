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

# ---- organisation usernames (orgs/usernames.py, seed 004) ----------------------------------------
# A username an organisation's admin created, and its temporary password: the person learns both.
_NOTICES["org_username"] = {
    "en": ("Your new username and temporary password",
           ("An administrator of {organisation} has created a username for you.\n\n"
            "    Username:  {username}\n    Temporary password:  {password}\n\n"
            "The password works once, for {duration}, and you must choose a new password when you "
            "sign in with it.\n\nNever tell the password to anyone, even someone who says they are "
            "from us.\nIf you did not expect this message, contact us.\n"),
           "{organisation} created the username {username} for you. Temporary password: "
           "{password}. It works once, for {duration}; change it when you sign in. Never give it "
           "to anyone."),
    "fi": ("Uusi käyttäjätunnuksesi ja väliaikainen salasana",
           ("Organisaation {organisation} ylläpitäjä on luonut sinulle käyttäjätunnuksen.\n\n"
            "    Käyttäjätunnus:  {username}\n    Väliaikainen salasana:  {password}\n\n"
            "Salasana toimii kerran ja on voimassa {duration} ajan. Sinun on valittava uusi "
            "salasana, kun kirjaudut sillä sisään.\n\nÄlä koskaan kerro salasanaa kenellekään, "
            "vaikka hän sanoisi olevansa meiltä.\nJos et odottanut tätä viestiä, ota meihin "
            "yhteyttä.\n"),
           "Organisaatio {organisation} loi sinulle käyttäjätunnuksen {username}. Väliaikainen "
           "salasana: {password}. Se toimii kerran, {duration} ajan, ja se on vaihdettava "
           "kirjautuessa. Älä anna sitä kenellekään."),
    "sv": ("Ditt nya användarnamn och tillfälliga lösenord",
           ("En administratör för {organisation} har skapat ett användarnamn åt dig.\n\n"
            "    Användarnamn:  {username}\n    Tillfälligt lösenord:  {password}\n\n"
            "Lösenordet kan användas en gång och gäller i {duration}. Du måste välja ett nytt "
            "lösenord när du loggar in med det.\n\nGe aldrig lösenordet till någon, inte ens till "
            "någon som säger att hen ringer från oss.\nOm du inte väntade dig det här meddelandet, "
            "kontakta oss.\n"),
           "{organisation} har skapat användarnamnet {username} åt dig. Tillfälligt lösenord: "
           "{password}. Det kan användas en gång och gäller i {duration}. Byt det när du loggar "
           "in. Ge det aldrig till någon."),
    "hu": ("Új felhasználóneve és ideiglenes jelszava",
           ("A(z) {organisation} szervezet egyik rendszergazdája felhasználónevet hozott létre "
            "Önnek.\n\n    Felhasználónév:  {username}\n    Ideiglenes jelszó:  {password}\n\n"
            "A jelszó egyszer használható, {duration} át érvényes, és az első bejelentkezéskor új "
            "jelszót kell választania.\n\nSoha ne árulja el a jelszót senkinek, akkor sem, ha "
            "valaki a nevünkben kéri.\nHa nem számított erre az üzenetre, lépjen kapcsolatba "
            "velünk.\n"),
           "A(z) {organisation} szervezet létrehozta Önnek a(z) {username} felhasználónevet. "
           "Ideiglenes jelszó: {password}. Egyszer használható, {duration} át érvényes, és "
           "bejelentkezéskor meg kell változtatnia. Soha ne adja meg senkinek."),
}
_NOTICE_PARAMS["org_username"] = ("organisation", "username", "password", "hours")

# ---- organisation invitations and ownership offers (orgs/invitations.py, orgs/ownership.py) ------
# A single-use link: {org} the organisation's name, {url} the link, {expires} "2025-06-30 14:05 UTC".
_NOTICES["org_invitation"] = {
    "en": ("An invitation to join an organisation",
           ("You have been invited to join {org}.\n\nOpen this link to see the invitation and accept "
            "it:\n\n    {url}\n\nThe link works once, until {expires}. To accept, sign in (or create "
            "an account) with this email address.\n\nIf you did not expect this invitation, you can "
            "ignore this message.\n"),
           "You have been invited to join {org}: {url} (valid until {expires})"),
    "fi": ("Kutsu liittyä organisaatioon",
           ("Sinut on kutsuttu organisaatioon {org}.\n\nAvaa tämä linkki nähdäksesi kutsun ja "
            "hyväksyäksesi sen:\n\n    {url}\n\nLinkki toimii kerran, ja se on voimassa {expires} "
            "asti. Hyväksy kutsu kirjautumalla sisään (tai luomalla tili) tällä "
            "sähköpostiosoitteella.\n\nJos et odottanut tätä kutsua, voit jättää viestin "
            "huomiotta.\n"),
           "Sinut on kutsuttu organisaatioon {org}: {url} (voimassa {expires} asti)"),
    "sv": ("En inbjudan att gå med i en organisation",
           ("Du har bjudits in till {org}.\n\nÖppna den här länken för att se inbjudan och tacka "
            "ja:\n\n    {url}\n\nLänken kan användas en gång och gäller till {expires}. Logga in "
            "(eller skapa ett konto) med den här e-postadressen för att tacka ja.\n\nOm du inte "
            "väntade dig den här inbjudan kan du bortse från meddelandet.\n"),
           "Du har bjudits in till {org}: {url} (gäller till {expires})"),
    "hu": ("Meghívás egy szervezetbe",
           ("Meghívást kapott a(z) {org} szervezetbe.\n\nA meghívó megtekintéséhez és "
            "elfogadásához nyissa meg ezt a linket:\n\n    {url}\n\nA link egyszer használható, "
            "és eddig érvényes: {expires}. Az elfogadáshoz jelentkezzen be ezzel az e-mail-címmel "
            "(vagy hozzon létre vele fiókot).\n\nHa nem számított erre a meghívásra, hagyja "
            "figyelmen kívül ezt az üzenetet.\n"),
           "Meghívást kapott a(z) {org} szervezetbe: {url} (érvényes eddig: {expires})"),
}
_NOTICES["ownership_offer"] = {
    "en": ("You are offered the ownership of an organisation",
           ("The owner of {org} offers you the ownership of the organisation.\n\nIf you accept, "
            "you become the owner and the current owner becomes an administrator. Open this link "
            "to see the offer and accept it:\n\n    {url}\n\nThe link works once, until "
            "{expires}. You can also accept the offer on the organisation's pages when signed "
            "in.\n\nIf you did not expect this offer, you can ignore this message.\n"),
           "You are offered the ownership of {org}: {url} (valid until {expires})"),
    "fi": ("Sinulle tarjotaan organisaation omistajuutta",
           ("Organisaation {org} omistaja tarjoaa sinulle organisaation omistajuutta.\n\nJos "
            "hyväksyt, sinusta tulee omistaja ja nykyisestä omistajasta ylläpitäjä. Avaa tämä "
            "linkki nähdäksesi tarjouksen ja hyväksyäksesi sen:\n\n    {url}\n\nLinkki toimii "
            "kerran, ja se on voimassa {expires} asti. Voit hyväksyä tarjouksen myös organisaation "
            "sivuilla kirjauduttuasi sisään.\n\nJos et odottanut tätä tarjousta, voit jättää "
            "viestin huomiotta.\n"),
           "Sinulle tarjotaan organisaation {org} omistajuutta: {url} (voimassa {expires} asti)"),
    "sv": ("Du erbjuds att bli ägare till en organisation",
           ("Ägaren till {org} erbjuder dig att ta över ägarskapet för organisationen.\n\nOm du "
            "tackar ja blir du ägare och den nuvarande ägaren blir administratör. Öppna den här "
            "länken för att se erbjudandet och tacka ja:\n\n    {url}\n\nLänken kan användas en "
            "gång och gäller till {expires}. Du kan också tacka ja på organisationens sidor när du "
            "är inloggad.\n\nOm du inte väntade dig det här erbjudandet kan du bortse från "
            "meddelandet.\n"),
           "Du erbjuds ägarskapet för {org}: {url} (gäller till {expires})"),
    "hu": ("Felajánlották Önnek egy szervezet tulajdonjogát",
           ("A(z) {org} szervezet tulajdonosa felajánlja Önnek a szervezet tulajdonjogát.\n\nHa "
            "elfogadja, Ön lesz a tulajdonos, a jelenlegi tulajdonos pedig adminisztrátor lesz. "
            "Az ajánlat megtekintéséhez és elfogadásához nyissa meg ezt a linket:\n\n    {url}\n\n"
            "A link egyszer használható, és eddig érvényes: {expires}. Az ajánlatot bejelentkezés "
            "után a szervezet oldalain is elfogadhatja.\n\nHa nem számított erre az ajánlatra, "
            "hagyja figyelmen kívül ezt az üzenetet.\n"),
           "Felajánlották Önnek a(z) {org} szervezet tulajdonjogát: {url} (érvényes eddig: {expires})"),
}
_NOTICE_PARAMS["org_invitation"] = _NOTICE_PARAMS["ownership_offer"] = ("org", "url", "expires")


# ---- password reset links (flows/reset_links.py) -------------------------------------------------
# A reset an administrator or help desk started for the person: {url} the single-use link,
# {expires} "2025-06-30 14:05 UTC". Like a code, the link is no one else's business.
_NOTICES["password_reset_link"] = {
    "en": ("Choose a new password",
           ("A new password was requested for your account.\n\nOpen this link and choose a new "
            "password:\n\n    {url}\n\nThe link works once, until {expires}. Never give it to anyone, "
            "even someone who says they are from us.\nIf you did not expect this message, you can "
            "ignore it: your password stays as it is.\n"),
           "Choose a new password for your account: {url} (works once, until {expires}). Never give "
           "the link to anyone."),
    "fi": ("Valitse uusi salasana",
           ("Tilillesi pyydettiin uutta salasanaa.\n\nAvaa tämä linkki ja valitse uusi "
            "salasana:\n\n    {url}\n\nLinkki toimii kerran, ja se on voimassa {expires} asti. Älä "
            "koskaan anna sitä kenellekään, vaikka hän sanoisi olevansa meiltä.\nJos et odottanut "
            "tätä viestiä, voit jättää sen huomiotta: salasanasi pysyy ennallaan.\n"),
           "Valitse tilillesi uusi salasana: {url} (toimii kerran, voimassa {expires} asti). Älä anna "
           "linkkiä kenellekään."),
    "sv": ("Välj ett nytt lösenord",
           ("Ett nytt lösenord har begärts för ditt konto.\n\nÖppna den här länken och välj ett nytt "
            "lösenord:\n\n    {url}\n\nLänken kan användas en gång och gäller till {expires}. Ge den "
            "aldrig till någon, inte ens till någon som säger att hen ringer från oss.\nOm du inte "
            "väntade dig det här meddelandet kan du bortse från det: ditt lösenord förblir "
            "oförändrat.\n"),
           "Välj ett nytt lösenord för ditt konto: {url} (kan användas en gång, gäller till "
           "{expires}). Ge aldrig länken till någon."),
    "hu": ("Válasszon új jelszót",
           ("Új jelszót kértek a fiókjához.\n\nNyissa meg ezt a linket, és válasszon új "
            "jelszót:\n\n    {url}\n\nA link egyszer használható, és eddig érvényes: {expires}. Soha "
            "ne adja meg senkinek, akkor sem, ha valaki a nevünkben kéri.\nHa nem számított erre az "
            "üzenetre, hagyja figyelmen kívül: a jelszava nem változik.\n"),
           "Válasszon új jelszót a fiókjához: {url} (egyszer használható, érvényes eddig: "
           "{expires}). Soha ne adja meg senkinek a linket."),
}
_NOTICE_PARAMS["password_reset_link"] = ("url", "expires")

# ---- organisation contacts (orgs/contacts.py, seed 002) ------------------------------------------
# A contact-change request with the personal link, the notice that a contact changed, and the
# notice that a request was refused. The sender localises the role and the "nobody" words with
# CONTACT_WORDS (the values are names and addresses, never translated).
CONTACT_WORDS: dict[str, dict[str, str]] = {
    "en": {"admin": "administrative contact", "technical": "technical contact",
           "billing": "billing contact", "none": "(none)", "administrator": "An administrator of the service"},
    "fi": {"admin": "hallinnollinen yhteyshenkilö", "technical": "tekninen yhteyshenkilö",
           "billing": "laskutusyhteyshenkilö", "none": "(ei ketään)", "administrator": "Palvelun ylläpitäjä"},
    "sv": {"admin": "administrativ kontaktperson", "technical": "teknisk kontaktperson",
           "billing": "kontaktperson för fakturering", "none": "(ingen)",
           "administrator": "En administratör för tjänsten"},
    "hu": {"admin": "adminisztratív kapcsolattartó", "technical": "műszaki kapcsolattartó",
           "billing": "számlázási kapcsolattartó", "none": "(nincs)",
           "administrator": "A szolgáltatás egyik rendszergazdája"},
}
_NOTICES["contact_change_request"] = {
    "en": ("Confirm a change of organisation contact",
           ("{requester} has asked to change a contact of an organisation:\n\n"
            "    Organisation:  {org}\n    Role:  {contact_kind}\n    Current contact:  {old}\n"
            "    New contact:  {new}\n\n"
            "The change takes effect only when both the current and the new contact have confirmed "
            "it. Open this link to see the request and to confirm or refuse it:\n\n    {link}\n\n"
            "The link is personal: do not forward it. It works once and is valid until {until}.\n"
            "If you do not know about this request, refuse it or ignore this message: nothing "
            "changes without your confirmation.\n"),
           "{requester} asked to change the {contact_kind} of {org}. Confirm or refuse: {link}"),
    "fi": ("Vahvista organisaation yhteyshenkilön vaihto",
           ("{requester} on pyytänyt vaihtamaan organisaation yhteyshenkilön:\n\n"
            "    Organisaatio:  {org}\n    Rooli:  {contact_kind}\n    Nykyinen yhteyshenkilö:  {old}\n"
            "    Uusi yhteyshenkilö:  {new}\n\n"
            "Vaihto tulee voimaan vasta, kun sekä nykyinen että uusi yhteyshenkilö ovat vahvistaneet "
            "sen. Avaa tämä linkki nähdäksesi pyynnön ja vahvistaaksesi tai hylätäksesi sen:\n\n"
            "    {link}\n\n"
            "Linkki on henkilökohtainen: älä välitä sitä eteenpäin. Se toimii kerran ja on voimassa "
            "{until} asti.\nJos et tiedä tästä pyynnöstä, hylkää se tai jätä tämä viesti huomiotta: "
            "mikään ei muutu ilman vahvistustasi.\n"),
           "{requester} pyysi vaihtamaan organisaation {org} yhteyshenkilön ({contact_kind}). "
           "Vahvista tai hylkää: {link}"),
    "sv": ("Bekräfta ett byte av kontaktperson för en organisation",
           ("{requester} har bett om att byta en kontaktperson för en organisation:\n\n"
            "    Organisation:  {org}\n    Roll:  {contact_kind}\n    Nuvarande kontaktperson:  {old}\n"
            "    Ny kontaktperson:  {new}\n\n"
            "Bytet träder i kraft först när både den nuvarande och den nya kontaktpersonen har "
            "bekräftat det. Öppna den här länken för att se begäran och bekräfta eller avvisa "
            "den:\n\n    {link}\n\n"
            "Länken är personlig: vidarebefordra den inte. Den fungerar en gång och gäller till "
            "{until}.\nOm du inte känner till den här begäran kan du avvisa den eller bortse från "
            "meddelandet: ingenting ändras utan din bekräftelse.\n"),
           "{requester} bad om att byta kontaktperson ({contact_kind}) för {org}. Bekräfta eller "
           "avvisa: {link}"),
    "hu": ("Erősítse meg a szervezet kapcsolattartójának cseréjét",
           ("{requester} kérte egy szervezet kapcsolattartójának cseréjét:\n\n"
            "    Szervezet:  {org}\n    Szerepkör:  {contact_kind}\n    Jelenlegi kapcsolattartó:  {old}\n"
            "    Új kapcsolattartó:  {new}\n\n"
            "A csere csak akkor lép életbe, ha a jelenlegi és az új kapcsolattartó is megerősítette. "
            "A kérés megtekintéséhez, megerősítéséhez vagy elutasításához nyissa meg ezt a "
            "hivatkozást:\n\n    {link}\n\n"
            "A hivatkozás személyes: ne továbbítsa senkinek. Egyszer használható, és {until} "
            "időpontig érvényes.\nHa nem tud erről a kérésről, utasítsa el, vagy hagyja figyelmen "
            "kívül ezt az üzenetet: az Ön megerősítése nélkül semmi sem változik.\n"),
           "{requester} kérte a(z) {org} szervezet kapcsolattartójának ({contact_kind}) cseréjét. "
           "Megerősítés vagy elutasítás: {link}"),
}
_NOTICES["contact_changed"] = {
    "en": ("An organisation contact was changed",
           ("A contact of an organisation has changed:\n\n"
            "    Organisation:  {org}\n    Role:  {contact_kind}\n    Previous contact:  {old}\n"
            "    New contact:  {new}\n\n"
            "If you did not expect this change, contact the organisation's administrators or us.\n"),
           "The {contact_kind} of {org} is now {new}."),
    "fi": ("Organisaation yhteyshenkilö vaihtui",
           ("Organisaation yhteyshenkilö on vaihtunut:\n\n"
            "    Organisaatio:  {org}\n    Rooli:  {contact_kind}\n    Aiempi yhteyshenkilö:  {old}\n"
            "    Uusi yhteyshenkilö:  {new}\n\n"
            "Jos et odottanut tätä muutosta, ota yhteyttä organisaation ylläpitäjiin tai meihin.\n"),
           "Organisaation {org} yhteyshenkilö ({contact_kind}) on nyt {new}."),
    "sv": ("En kontaktperson för en organisation har bytts",
           ("En kontaktperson för en organisation har bytts:\n\n"
            "    Organisation:  {org}\n    Roll:  {contact_kind}\n    Tidigare kontaktperson:  {old}\n"
            "    Ny kontaktperson:  {new}\n\n"
            "Om du inte väntade dig den här ändringen, kontakta organisationens administratörer "
            "eller oss.\n"),
           "Kontaktpersonen ({contact_kind}) för {org} är nu {new}."),
    "hu": ("Megváltozott a szervezet kapcsolattartója",
           ("Egy szervezet kapcsolattartója megváltozott:\n\n"
            "    Szervezet:  {org}\n    Szerepkör:  {contact_kind}\n    Korábbi kapcsolattartó:  {old}\n"
            "    Új kapcsolattartó:  {new}\n\n"
            "Ha nem számított erre a változásra, lépjen kapcsolatba a szervezet rendszergazdáival "
            "vagy velünk.\n"),
           "A(z) {org} szervezet kapcsolattartója ({contact_kind}) mostantól: {new}."),
}
_NOTICES["contact_change_refused"] = {
    "en": ("A contact change was refused",
           ("The request to change a contact of an organisation was refused, so nothing changed:\n\n"
            "    Organisation:  {org}\n    Role:  {contact_kind}\n    Current contact:  {old}\n"
            "    Proposed new contact:  {new}\n    Refused by:  {by}\n\n"
            "If the change is still wanted, a new request can be made.\n"),
           "The request to change the {contact_kind} of {org} was refused by {by}."),
    "fi": ("Yhteyshenkilön vaihto hylättiin",
           ("Pyyntö vaihtaa organisaation yhteyshenkilö hylättiin, joten mitään ei muutettu:\n\n"
            "    Organisaatio:  {org}\n    Rooli:  {contact_kind}\n    Nykyinen yhteyshenkilö:  {old}\n"
            "    Ehdotettu uusi yhteyshenkilö:  {new}\n    Hylkäsi:  {by}\n\n"
            "Jos vaihto on yhä tarpeen, siitä voi tehdä uuden pyynnön.\n"),
           "Pyyntö vaihtaa organisaation {org} yhteyshenkilö ({contact_kind}) hylättiin. Hylkäsi: {by}."),
    "sv": ("Ett byte av kontaktperson avvisades",
           ("Begäran om att byta en kontaktperson för en organisation avvisades, så ingenting har "
            "ändrats:\n\n"
            "    Organisation:  {org}\n    Roll:  {contact_kind}\n    Nuvarande kontaktperson:  {old}\n"
            "    Föreslagen ny kontaktperson:  {new}\n    Avvisad av:  {by}\n\n"
            "Om bytet fortfarande behövs kan en ny begäran göras.\n"),
           "Begäran om att byta kontaktperson ({contact_kind}) för {org} avvisades av {by}."),
    "hu": ("Elutasították a kapcsolattartó cseréjét",
           ("Egy szervezet kapcsolattartójának cseréjére vonatkozó kérést elutasították, így semmi "
            "sem változott:\n\n"
            "    Szervezet:  {org}\n    Szerepkör:  {contact_kind}\n    Jelenlegi kapcsolattartó:  {old}\n"
            "    Javasolt új kapcsolattartó:  {new}\n    Elutasította:  {by}\n\n"
            "Ha a cserére továbbra is szükség van, új kérés indítható.\n"),
           "A(z) {org} szervezet kapcsolattartójának ({contact_kind}) cseréjét elutasította: {by}."),
}
_NOTICE_PARAMS["contact_change_request"] = ("requester", "org", "contact_kind", "old", "new", "link", "until")
_NOTICE_PARAMS["contact_changed"] = ("org", "contact_kind", "old", "new")
_NOTICE_PARAMS["contact_change_refused"] = ("org", "contact_kind", "old", "new", "by")
# ---- end of organisation contacts ------------------------------------------------------------------

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

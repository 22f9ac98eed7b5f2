"""Password rules (NIST SP 800-63B-4 §3.1.1.2; SECURITY-CHECKLIST 70, 71, 72): the policy table,
the account service that enforces it, and `idp users add` refusing a weak password."""

from __future__ import annotations

import secrets
import unicodedata

import pytest

from idp.accounts.password_policy import PasswordPolicy, PasswordRejected, common_passwords
from idp.accounts.service import AccountError
from tests.rp import PASSWORD
from tests.test_cli import _env, failed, idp, ok
from tests.password_support import password_owner

EMAIL = "maija.meikalainen@example.com"
POLICY = PasswordPolicy()
LONG = "the quick brown fox jumps over the lazy dog " * 10


def verdict(password: str, *, mfa: bool = False, policy: PasswordPolicy = POLICY) -> str:
    try:
        policy.check(password, has_second_factor=mfa, identifiers=(EMAIL,))
    except PasswordRejected as exc:
        return exc.reason
    return "ok"


@pytest.mark.parametrize("password, mfa, expected", [
    # Length: 15 alone, 8 with a second factor; long ones are accepted and never truncated.
    ("seven c", False, "too_short"),
    ("seven c", True, "too_short"),
    ("fourteen chars", False, "too_short"),
    ("fifteen chars!!", False, "ok"),
    ("eight ch", True, "ok"),
    ("eight ch", False, "too_short"),
    ("a" * 14 + "b", False, "ok"),
    ("seventy characters of a long memorable passphrase nobody will ever guess", False, "ok"),
    (LONG[:256], False, "ok"),  # 256 is accepted; 257 is not
    (LONG[:257], False, "too_long"),
    # Any Unicode, counted per character after NFKC.
    ("Salasanani on kääpiöhevonen", False, "ok"),
    ("Jelszó: árvíztűrő tükörfúrógép", False, "ok"),
    ("🐧 on ice 🧊 at noon", False, "ok"),
    ("鍵の番人は静かな夜に歌う", True, "ok"),
    ("鍵の番人は静かな夜に歌う", False, "too_short"),  # 12 characters, however many bytes
    # No composition rules: lower-case letters and spaces only is fine.
    ("the quiet walrus eats figs", False, "ok"),
    # The shipped blocklist, with case and obvious variants.
    ("password123456789", False, "common"),
    ("Password123456789", False, "common"),
    ("Password-123456789!", False, "common"),  # the letters are "password"
    ("qwertyuiopasdfghjkl", False, "common"),
    ("1q2w3e4r5t6y7u8i9o0p", False, "common"),
    ("iloveyouiloveyou", False, "common"),
    ("password123", True, "common"),
    ("Passw0rd!", True, "common"),
    ("Summer2024", True, "common"),
    ("aaaaaaaaaaaaaaaaaaaa", False, "common"),
    ("abcabcabcabcabcabc", False, "common"),
    ("dragon 1234 5678 9012", False, "common"),
    # Context words: the email, its local part and the names in it, the service name.
    ("maija.meikalainen forever", False, "contains_identifier"),
    ("MAIJA.MEIKALAINEN@EXAMPLE.COM", False, "contains_identifier"),
    ("my name is Maija, hello!", False, "contains_identifier"),
    ("Idp2024!Idp2024!", False, "contains_identifier"),
    ("idp idp idp idp idp", False, "contains_identifier"),
    ("idp12345", True, "contains_identifier"),
    # ... but a short service name inside an innocent word is not a derivative.
    ("stupid penguins dance", False, "ok"),
    ("my idp has a very long passphrase", False, "ok"),
])
def test_policy_table(password, mfa, expected):
    assert verdict(password, mfa=mfa) == expected


def test_the_passwords_the_project_uses_are_accepted():
    assert verdict(PASSWORD) == "ok"
    assert verdict("correct horse battery staple") == "ok"  # the demo user's


def test_nfkc_makes_equivalent_input_one_password():
    composed = "Kääpiöhevonen laukkaa"
    decomposed = unicodedata.normalize("NFD", composed)
    fullwidth = "ｆｕｌｌｗｉｄｔｈ ｐａｓｓｐｈｒａｓｅ"
    assert composed != decomposed
    assert POLICY.check(decomposed) == POLICY.check(composed) == composed
    assert POLICY.check(fullwidth) == "fullwidth passphrase"
    # Length is measured after normalisation: 15 decomposed code points may be fewer characters.
    assert len(unicodedata.normalize("NFD", "ääääääääääääää")) == 28
    assert verdict(unicodedata.normalize("NFD", "äöäöäöä quiet ä")) == "ok"
    assert verdict(unicodedata.normalize("NFD", "äöäöäöä quiet")) == "too_short"


def test_no_spaces_rule_is_a_setting():
    strict = PasswordPolicy(forbid_spaces=True)
    assert verdict("the quiet walrus eats figs") == "ok"
    assert verdict("the quiet walrus eats figs", policy=strict) == "has_spaces"
    assert verdict("the\u00a0quiet\u00a0walrus\u00a0eats", policy=strict) == "has_spaces"  # no-break
    assert verdict("the\tquiet\twalrus\teats", policy=strict) == "has_spaces"
    assert verdict("thequietwalruseatsfigs", policy=strict) == "ok"


def test_lengths_are_settings_and_64_can_never_be_refused():
    relaxed = PasswordPolicy(min_length=12, min_length_with_second_factor=10, max_length=64)
    assert verdict("twelve chars", policy=relaxed) == "ok"
    assert verdict("nine char", mfa=True, policy=relaxed) == "too_short"
    assert verdict("q" * 60 + "wert", policy=relaxed) == "ok"
    with pytest.raises(ValueError):
        PasswordPolicy(max_length=63)


def test_the_blocklist_ships_with_the_package():
    words = common_passwords()
    assert len(words) > 2000
    assert {"password", "123456", "qwerty", "iloveyou", "password123", "passw0rd!"} <= words
    assert all(w == w.lower() and w.strip() == w for w in words)


def test_rejection_is_an_account_error_with_a_message():
    with pytest.raises(AccountError, match="at least 15 characters") as caught:
        POLICY.check("too short")
    assert isinstance(caught.value, PasswordRejected) and caught.value.reason == "too_short"
    assert caught.value.params == {"minimum": 15}


# ---- the account service enforces it ----------------------------------------------------------

def _email() -> str:
    return f"policy-{secrets.token_hex(4)}@example.com"


async def test_create_user_refuses_a_weak_password_and_creates_nothing(services):
    email = _email()
    async with services.db.transaction() as db:
        with pytest.raises(PasswordRejected) as caught:
            await services.accounts.create_user(db, email=email, password="password123456789")
        assert caught.value.reason == "common"
        assert await services.accounts.find_by_email(db, email) is None


async def test_create_user_hashes_the_normalised_password(services):
    email = _email()
    composed = "Kääpiöhevonen laukkaa tänään"
    async with services.db.transaction() as db:
        await services.accounts.create_user(db, email=email,
                                            password=unicodedata.normalize("NFD", composed))
    async with services.db.transaction() as db:
        # Typed on another keyboard (precomposed), the same password signs in.
        assert await password_owner(services, db, email, composed) is not None
        assert await password_owner(services, db, email, composed + "x") is None


def test_a_new_password_of_an_account_meets_the_policy_with_its_identifiers(services):
    """What a change of password (the account pages, a reset) asks of the new one; the current
    password it needs is tested through the pages (test_account_pages.py)."""
    email = _email()
    policy = services.password_policy
    with pytest.raises(PasswordRejected) as short:
        policy.check("tiny pw!", has_second_factor=False, identifiers=(email,))
    assert short.value.reason == "too_short"
    with pytest.raises(PasswordRejected) as mine:
        policy.check(email.split("@")[0] + " is me", has_second_factor=False, identifiers=(email,))
    assert mine.value.reason == "contains_identifier"
    # With a second factor, 8 characters are enough.
    assert policy.check("Ok8chars", has_second_factor=True, identifiers=(email,)) == "Ok8chars"


# ---- idp users add -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict:
    env = _env(tmp_path_factory.mktemp("cli-policy"))
    ok(idp(env, "migrate"))
    return env


def test_users_add_with_a_short_password_fails_with_the_reason(cli):
    email = _email()
    result = idp(cli, "users", "add", "--email", email, "--password", "short one", "--json")
    failed(result, "at least 15 characters")
    assert result.stdout.strip() == ""
    # Nothing was created: the same email with a good password works.
    ok(idp(cli, "users", "add", "--email", email, "--password", PASSWORD, "--json"))


def test_users_add_with_a_common_password_fails(cli):
    failed(idp(cli, "users", "add", "--email", _email(), "--password", "qwertyuiopasdfghjkl"),
           "too common")


def test_users_add_honours_the_no_spaces_setting(cli):
    strict = cli | {"IDP_PASSWORD_FORBID_SPACES": "true"}
    failed(idp(strict, "users", "add", "--email", _email(), "--password", PASSWORD), "spaces")
    ok(idp(strict, "users", "add", "--email", _email(), "--password", "alongenoughtestpassword"))

"""Which passwords we accept: NIST SP 800-63B-4 §3.1.1.2 (and ASVS 5.0 V6.2).

- Length is the rule that matters: at least 15 characters when the password is the only factor,
  at least 8 when the account also has a second factor, and at least 64 accepted (we take up to
  `max_length`, 256 by default, only to bound the hashing work). Passwords are never truncated.
- Any Unicode is allowed, including spaces and emoji, and there are no composition rules
  ("one digit, one symbol"): they make passwords harder to remember and no harder to guess.
- Passwords are compared against a blocklist of common and breached values (shipped with the
  package as `common-passwords.txt`) and against context words: the account's email and the name
  of the service, and obvious derivatives of them.
- One optional house rule, `forbid_spaces`, because seed 001's customers tell people not to use
  spaces (NIST allows them; it is off by default).

Normalisation. The password is normalised with Unicode NFKC before it is measured, checked and
hashed (63B-4 §3.1.1.2 asks for normalisation, and names NFKC/NFKD). The same text can arrive as
different code points: "é" precomposed from one keyboard and "e" + combining accent from another,
a full-width "Ａ" from an East Asian IME, a no-break space pasted from a document. Without
normalisation the person could not sign in from a different device; with NFKC they all hash the
same. Length is counted in code points after normalisation, so every Unicode character counts as
one character, as 63B-4 says.

`PasswordRejected.reason` is a stable code (`too_short`, `too_long`, `common`,
`contains_identifier`, `has_spaces`) that pages translate; the message is an English fallback.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from idp.accounts.errors import AccountError

REASONS = ("too_short", "too_long", "common", "contains_identifier", "has_spaces")

_MESSAGES = {
    "too_short": "the password must be at least {minimum} characters long",
    "too_long": "the password must be at most {maximum} characters long",
    "common": "the password is too common; choose one that is hard to guess",
    "contains_identifier": "the password must not contain your email address or the service name",
    "has_spaces": "the password must not contain spaces",
}

# Context words shorter than this are not searched for as substrings: a 2-letter email local part
# would otherwise forbid every password containing those two letters.
_MIN_IDENTIFIER = 3
# What is left of a password after taking out a context word, digits and symbols must have at
# least this many letters, or the password is a "derivative" of the word (idp2024!, Idp-idp-idp).
_MIN_REMAINDER = 4


class PasswordRejected(AccountError):
    """The new password breaks the policy; `reason` is one of REASONS, `params` fill its message."""

    def __init__(self, reason: str, **params: int) -> None:
        assert reason in REASONS, reason
        self.reason = reason
        self.params = params
        super().__init__(_MESSAGES[reason].format(**params))


def normalise_password(password: str) -> str:
    """NFKC, the form we measure and hash (see the module docstring for why)."""
    return unicodedata.normalize("NFKC", password)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped blocklist: lower-cased, one per line, `#` starts a comment line."""
    text = resources.files("idp.accounts").joinpath("common-passwords.txt").read_text("utf-8")
    return frozenset(line for line in (raw.strip() for raw in text.splitlines())
                     if line and not line.startswith("#"))


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 15
    min_length_with_second_factor: int = 8
    max_length: int = 256
    forbid_spaces: bool = False
    # The service's own names: a password that is little more than one of them is refused.
    service_words: tuple[str, ...] = ("idp",)
    blocklist: frozenset[str] = field(default_factory=common_passwords, repr=False)

    def __post_init__(self) -> None:
        # 63B-4 §3.1.1.2: verifiers SHALL permit at least 64 characters.
        if self.max_length < 64:
            raise ValueError("the maximum password length must be at least 64")
        if not 1 <= self.min_length_with_second_factor <= self.min_length <= self.max_length:
            raise ValueError("password lengths must satisfy 1 <= with second factor <= single <= max")

    def check(self, password: str, *, has_second_factor: bool = False,
              identifiers: tuple[str, ...] = ()) -> str:
        """The normalised password (hash this one), or PasswordRejected.

        `identifiers`: what identifies the account (its email addresses, later phone numbers).
        """
        password = normalise_password(password)
        minimum = self.min_length_with_second_factor if has_second_factor else self.min_length
        if len(password) < minimum:
            raise PasswordRejected("too_short", minimum=minimum)
        if len(password) > self.max_length:
            raise PasswordRejected("too_long", maximum=self.max_length)
        if self.forbid_spaces and any(ch.isspace() for ch in password):
            raise PasswordRejected("has_spaces")
        folded = password.casefold()
        # The more specific reason first: "Idp2024!Idp2024!" is also common, but says less.
        if self._contains_identifier(folded, identifiers):
            raise PasswordRejected("contains_identifier")
        if self._is_common(folded):
            raise PasswordRejected("common")
        return password

    def _is_common(self, folded: str) -> bool:
        # Exact entry ("passw0rd!"), the letters of it ("Password-123456789" → "password"), or a
        # repetition of a listed or very short unit ("qwertyqwerty", "abcabcabcabcabc").
        compact = re.sub(r"\s+", "", folded)
        letters = _letters(folded)
        for candidate in {folded, compact, letters}:
            unit = _repeated_unit(candidate)
            if candidate in self.blocklist or unit in self.blocklist:
                return True
            if candidate and len(unit) <= 3:
                return True
        return False

    def _contains_identifier(self, folded: str, identifiers: tuple[str, ...]) -> bool:
        words: set[str] = set()
        for identifier in identifiers:
            identifier = normalise_password(identifier).casefold().strip()
            local = identifier.partition("@")[0]
            words |= {identifier, local}
            # "maija.meikalainen+news" → maija, meikalainen, news: names are guessable too.
            words |= {part for part in re.split(r"[^\w]+|_", local) if len(part) >= _MIN_IDENTIFIER + 1}
        if any(len(word) >= _MIN_IDENTIFIER and word in folded for word in words):
            return True
        # Service names are short and occur inside innocent words ("stupidpenguin"), so only a
        # password that is the name plus digits and symbols ("Idp2024!idp") counts.
        return any(len(_letters(folded.replace(word.casefold(), ""))) < _MIN_REMAINDER
                   for word in self.service_words if word and word.casefold() in folded)


def _letters(text: str) -> str:
    return "".join(ch for ch in text if ch.isalpha())


def _repeated_unit(text: str) -> str:
    """The shortest string whose repetition is `text` ("abab" → "ab")."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return text

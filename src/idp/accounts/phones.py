"""Phone numbers: what people type (0401234567, +358 40 123 4567, 06 30 123 4567) to E.164.

Numbers are parsed with `phonenumbers` against a configured default region, so a national form
means a number of that region. Every stored or compared number is E.164 (`+358401234567`).

SMS is stricter than "a valid number": only mobile numbers (or numbers the numbering plan cannot
tell apart from mobiles) and only countries on an allow-list of calling codes. A landline
cannot read an SMS, and premium-rate and far-away destinations are how SMS pumping fraud turns
a sign-in page into revenue for someone else (SECURITY-CHECKLIST items 93 and 94). These checks
run before any gateway is called.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

# Digits, one leading plus, and the separators people type. No letters: phonenumbers would
# read "1-800-FLOWERS" as digits, which is never what someone signing in meant.
_TYPED = re.compile(r"\s*\+?[0-9 \-().\/]+\s*\Z")
_MAX_TYPED_LENGTH = 40
_SMS_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


class PhoneNumberError(ValueError):
    """A phone number we will not use. `reason` is a stable code for pages and APIs."""

    reason = "invalid_phone_number"


class InvalidPhoneNumber(PhoneNumberError):
    reason = "invalid_phone_number"

    def __init__(self) -> None:
        super().__init__("invalid number")


class NotAMobileNumber(PhoneNumberError):
    reason = "not_a_mobile_number"

    def __init__(self) -> None:
        super().__init__("not a mobile number: SMS cannot be sent to it")


class CountryNotAllowed(PhoneNumberError):
    reason = "country_not_allowed"

    def __init__(self, country_code: int) -> None:
        super().__init__(f"SMS to country calling code +{country_code} is not allowed")
        self.country_code = country_code


class PhonePolicy:
    """Normalises typed numbers and decides which ones may receive an SMS."""

    def __init__(self, default_region: str, sms_allowed_country_codes: Iterable[int]) -> None:
        region = default_region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {default_region!r}")
        self.default_region = region
        self.sms_allowed_country_codes = frozenset(int(code) for code in sms_allowed_country_codes)

    def normalise(self, typed: str) -> str:
        """E.164 of a valid number in national or international form; else InvalidPhoneNumber."""
        return _e164(self._parse(typed))

    def normalise_for_sms(self, typed: str) -> str:
        """E.164 of a number that may receive an SMS (valid, mobile, allowed country)."""
        number = self._parse(typed)
        self._check_sms(number)
        return _e164(number)

    def check_sms_destination(self, e164: str) -> None:
        """Raise unless an already normalised number may receive an SMS (before any gateway)."""
        if not e164.startswith("+"):
            raise InvalidPhoneNumber()
        self._check_sms(self._parse(e164))

    def _parse(self, typed: str) -> phonenumbers.PhoneNumber:
        if not isinstance(typed, str) or len(typed) > _MAX_TYPED_LENGTH or not _TYPED.match(typed):
            raise InvalidPhoneNumber()
        try:
            # "00358…" works too: the default region's international prefix is understood.
            number = phonenumbers.parse(typed, self.default_region)
        except NumberParseException:
            raise InvalidPhoneNumber() from None
        if number.extension or not phonenumbers.is_valid_number(number):
            raise InvalidPhoneNumber()
        return number

    def _check_sms(self, number: phonenumbers.PhoneNumber) -> None:
        # The country first: a number outside the allow-list is refused whatever its type.
        if number.country_code not in self.sms_allowed_country_codes:
            raise CountryNotAllowed(number.country_code)
        if phonenumbers.number_type(number) not in _SMS_TYPES:
            raise NotAMobileNumber()


def _e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

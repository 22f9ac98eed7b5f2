"""Phone numbers typed in national or international form become E.164; SMS only to mobiles in
allowed countries (SECURITY-CHECKLIST 94)."""

from __future__ import annotations

import pytest

from idp.accounts.phones import (
    CountryNotAllowed,
    InvalidPhoneNumber,
    NotAMobileNumber,
    PhoneNumberError,
    PhonePolicy,
)
from idp.settings import Settings

EU_EEA = Settings.model_fields["sms_allowed_country_codes"].default


@pytest.fixture
def fi() -> PhonePolicy:
    return PhonePolicy("FI", EU_EEA)


@pytest.fixture
def hu() -> PhonePolicy:
    return PhonePolicy("HU", EU_EEA)


@pytest.mark.parametrize("typed", [
    "0401234567", "040 123 4567", "040-123 4567", "040-1234567", "(040) 123 4567",
    "+358 40 123 4567", "+358401234567", "00358 40 123 4567", "  +358-40-123-4567 ",
])
def test_finnish_forms_normalise_to_e164(fi, typed):
    assert fi.normalise(typed) == "+358401234567"


@pytest.mark.parametrize("typed", [
    "06 30 123 4567", "06-30-123-4567", "301234567", "30 123 4567", "+36 30 123 4567",
    "0036 30 123 4567",
])
def test_hungarian_forms_normalise_with_region_hu(hu, typed):
    assert hu.normalise(typed) == "+36301234567"


def test_international_form_ignores_the_default_region(fi, hu):
    assert fi.normalise("+36 30 123 4567") == "+36301234567"
    assert hu.normalise("+358 40 123 4567") == "+358401234567"


def test_hungarian_national_form_is_not_a_finnish_number(fi):
    with pytest.raises(InvalidPhoneNumber):
        fi.normalise("06 30 123 4567")


@pytest.mark.parametrize("typed", [
    "", "   ", "+", "040123", "12", "+358 40", "0401234567890123", "not a number",
    "1-800-FLOWERS", "+358 40 123 4567 ext. 5", "+999 123 456 789", "0" * 60, "040\n1234567",
])
def test_invalid_numbers_are_refused_with_a_clear_message(fi, typed):
    with pytest.raises(InvalidPhoneNumber, match="invalid number") as caught:
        fi.normalise(typed)
    assert caught.value.reason == "invalid_phone_number"
    assert isinstance(caught.value, PhoneNumberError)


def test_landline_is_a_valid_identifier_but_refused_for_sms(fi, hu):
    assert fi.normalise("09 1234 567") == "+35891234567"
    with pytest.raises(NotAMobileNumber):
        fi.normalise_for_sms("09 1234 567")
    with pytest.raises(NotAMobileNumber):
        hu.normalise_for_sms("06 1 234 5678")  # Budapest landline


@pytest.mark.parametrize("typed", ["+232 76 123456", "+880 1712 345678", "+41 79 123 45 67",
                                   "+44 7400 123456", "+1 202 555 0143"])
def test_numbers_outside_the_allow_list_are_refused_for_sms(fi, typed):
    fi.normalise(typed)  # valid numbers ...
    with pytest.raises(CountryNotAllowed) as caught:  # ... but not SMS destinations
        fi.normalise_for_sms(typed)
    assert caught.value.reason == "country_not_allowed"


@pytest.mark.parametrize("typed, e164", [
    ("+358 40 123 4567", "+358401234567"), ("+36 30 123 4567", "+36301234567"),
    ("+46 70 123 45 67", "+46701234567"), ("+47 412 34 567", "+4741234567"),
    ("0501234567", "+358501234567"),
])
def test_allowed_mobiles_pass_for_sms(fi, typed, e164):
    assert fi.normalise_for_sms(typed) == e164
    fi.check_sms_destination(e164)


def test_check_sms_destination_wants_e164(fi):
    with pytest.raises(InvalidPhoneNumber):
        fi.check_sms_destination("0401234567")
    with pytest.raises(CountryNotAllowed):
        fi.check_sms_destination("+23276123456")


def test_default_allow_list_is_the_eu_eea():
    assert len(EU_EEA) == 30  # 27 EU member states + Iceland, Liechtenstein, Norway
    assert {358, 36, 46, 47, 354, 423}.issubset(EU_EEA)
    assert not {41, 44, 350, 232, 880, 1, 7}.intersection(EU_EEA)


def test_unknown_default_region_fails_at_startup():
    with pytest.raises(ValueError):
        PhonePolicy("XX", EU_EEA)

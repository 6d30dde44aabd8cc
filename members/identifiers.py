"""Normalising identifiers: phones to E.164, emails case-folded, cards to digits; card numbers."""

import secrets

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from coalition.errors import InvalidRequest
from members.models import IdentifierKind

CARD_PREFIX = "7"
CARD_LENGTH = 16


def phone_normalise(raw: str, region: str) -> str:
    """E.164 (`+919812345678`); a number without country code takes the coalition's region."""
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidRequest(f"Not a phone number: {exc}.", field="phone") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidRequest("Not a valid phone number.", field="phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def email_normalise(raw: str) -> str:
    value = raw.strip().casefold()
    try:
        validate_email(value)
    except ValidationError as exc:
        raise InvalidRequest("Not a valid email address.", field="email") from exc
    return value


def card_normalise(raw: str) -> str:
    value = raw.strip().replace(" ", "").replace("-", "").upper()
    if not value or len(value) > 32 or not value.isalnum():
        raise InvalidRequest("A card number is 1 to 32 letters or digits.", field="card")
    return value


def identifier_normalise(kind: str, raw: str, region: str) -> str:
    if kind == IdentifierKind.PHONE:
        return phone_normalise(raw, region)
    if kind == IdentifierKind.EMAIL:
        return email_normalise(raw)
    if kind == IdentifierKind.CARD:
        return card_normalise(raw)
    raise InvalidRequest(f"Unknown identifier kind {kind!r}.", field="member")


def luhn_check_digit(digits: str) -> str:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def card_generate() -> str:
    """A random 16-digit card number with a Luhn check digit, so typos at a till are caught."""
    body = CARD_PREFIX + "".join(
        str(secrets.randbelow(10)) for _ in range(CARD_LENGTH - len(CARD_PREFIX) - 1)
    )
    return body + luhn_check_digit(body)

"""The request contract for a parcel (DESIGN §2): pure, and on the hot path of every request.

``validate_parcel`` takes a mapping of parameter name to value and either returns a `Parcel` or
raises `MissingFields` (some parameter absent or blank; nothing else is checked) or
`ValidationError` (every bad field at once). Each check is one compiled regular expression or a
set lookup plus integer arithmetic: no exception is raised or caught on the happy path.

Choices the contract leaves open:

- Values. A value is a ``str``; a ``list`` or ``tuple`` holds every value a repeated query
  parameter was given: one value counts as that value, none as missing, two or more are an
  error. ``None`` (JSON ``null``) counts as missing. Any other type is an error, except that
  ``weight`` may also be a JSON number.
- Only ``customer_name`` is trimmed. The other values are checked as sent, so ``" 1"`` is not a
  weight: a client that pads a value has a bug worth hearing about.
- ``weight``: ``0|[1-9][0-9]*`` kilograms and up to 3 decimals. Leading zeros (``01.5``) are
  rejected, so a weight has one spelling and no reader can take ``010`` for octal; ``0.5`` is
  fine. Trailing zeros within the 3 decimals (``1.500``) are fine. The canonical form drops them
  (``1.5``, ``2``). A JSON float is taken at its shortest ``repr``, which is what the client's
  JSON text said, so ``0.1`` is 100 g and ``0.30000000000000004`` has too many decimals.
- ``created_at``: ``T`` or ``t`` between date and time (RFC 3339 §5.6); a space there, which
  RFC 3339 allows only "by mutual agreement", is rejected, which also keeps it from being
  confused with the space an unencoded ``+`` becomes. A fraction has 1 to 9 digits (nanoseconds)
  and is truncated, never rounded, to microseconds, so a time never moves into the next
  second. A leap second (``:60``) is rejected: ``datetime`` cannot represent it and the leap
  seconds are being retired. ``-00:00`` ("offset unknown", RFC 3339 §4.3) is read as UTC. Years
  run from 0001 to 9999, minus the few hours at either end that fall outside them in UTC.
- ``customer_id``: any version or variant, so long as it is the canonical 8-4-4-4-12 shape.
- ``customer_name``: trimmed of Unicode whitespace, then at most 200 code points. Rejected: the
  control characters (category Cc), the line and paragraph separators U+2028 and U+2029, lone
  surrogates (not text; they fail to encode as UTF-8), and the bidirectional embeddings,
  overrides and isolates U+202A to U+202E and U+2066 to U+2069, which reorder the text around
  them on a screen or label (CVE-2021-42574). The rest of category Cf is kept: the zero-width
  joiners are part of how Persian, Indic scripts and emoji are written.
- Messages echo at most the first 20 characters of a value, through ``repr`` so that control
  characters arrive escaped, and never echo a name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from math import isfinite
from typing import NamedTuple

from snowflake_tracker.countries import ASSIGNED

FIELDS: tuple[str, ...] = (
    "origin_country_id",
    "destination_country_id",
    "weight",
    "created_at",
    "customer_id",
    "customer_name",
    "customer_slug",
)

MISSING_MESSAGE = "All parameters are required"
INVALID_MESSAGE = "Some parameters are invalid"

DEFAULT_MAX_WEIGHT_KG = 1000
WEIGHT_DECIMALS = 3
MAX_NAME_LENGTH = 200
MAX_SLUG_LENGTH = 100
ECHO_LENGTH = 20
MAX_FRACTION_DIGITS = 9

_GRAMS_PER_KG: int = 10**WEIGHT_DECIMALS
_MICROSECOND_DIGITS = 6


class Parcel(NamedTuple):
    """A parcel whose every parameter passed the contract, in canonical form.

    A named tuple rather than a frozen dataclass: it is built once per parcel on the hot path,
    and a tuple is built in a third of the time.
    """

    origin_country_id: str
    destination_country_id: str
    weight_grams: int
    weight: str
    created_at: datetime
    customer_id: str
    customer_name: str
    customer_slug: str


# The name is the contract the web layer codes against, hence no "Error" suffix.
class MissingFields(ValueError):
    """Some parameters are absent or blank; ``missing`` names them in `FIELDS` order."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(MISSING_MESSAGE)
        self.missing = missing


class ValidationError(ValueError):
    """Some parameters break their rule; ``errors`` maps each to what is wrong and allowed."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(INVALID_MESSAGE)
        self.errors = errors


def validate_parcel(
    params: Mapping[str, object], *, max_weight_kg: Decimal | float | str = DEFAULT_MAX_WEIGHT_KG
) -> Parcel:
    """Check every parameter of `FIELDS` in ``params`` and return them in canonical form.

    ``max_weight_kg`` is a Decimal, int, float or decimal string with at most 3 decimals; a bad
    one raises ``ValueError`` naming the setting, whatever the parameters.
    """
    max_grams, max_whole_digits = _weight_limit(max_weight_kg)
    get = params.get
    values: list[object] = [get(name) for name in FIELDS]
    # The common case, seven non-blank strings, is settled in one pass; str.isspace() and
    # str.strip() agree on what whitespace is, so this is "empty after trimming" without
    # building the trimmed copy.
    for value in values:
        if type(value) is not str or not value or value.isspace():
            values = _unwrap_and_check_present(values)
            break

    # Each check raises only on bad input, where the cost no longer matters; a try block costs
    # nothing when nothing is raised.
    errors: dict[str, str] = {}
    try:
        origin = _check_country(values[0])
    except ValueError as exc:
        errors["origin_country_id"] = str(exc)
    try:
        destination = _check_country(values[1])
    except ValueError as exc:
        errors["destination_country_id"] = str(exc)
    try:
        weight_grams, weight = _check_weight(values[2], max_grams, max_whole_digits)
    except ValueError as exc:
        errors["weight"] = str(exc)
    try:
        created_at = _check_created_at(values[3])
    except ValueError as exc:
        errors["created_at"] = str(exc)
    try:
        customer_id = _check_customer_id(values[4])
    except ValueError as exc:
        errors["customer_id"] = str(exc)
    try:
        customer_name = _check_customer_name(values[5])
    except ValueError as exc:
        errors["customer_name"] = str(exc)
    try:
        customer_slug = _check_customer_slug(values[6])
    except ValueError as exc:
        errors["customer_slug"] = str(exc)
    if errors:
        raise ValidationError(errors)
    return Parcel(
        origin,
        destination,
        weight_grams,
        weight,
        created_at,
        customer_id,
        customer_name,
        customer_slug,
    )


def _unwrap_and_check_present(values: list[object]) -> list[object]:
    """Take single values out of lists; raise MissingFields for absent or blank ones."""
    missing: list[str] = []
    unwrapped: list[object] = []
    for name, given in zip(FIELDS, values, strict=True):
        value = given
        if isinstance(value, (list, tuple)) and len(value) < 2:
            value = value[0] if value else None
        if value is None or (isinstance(value, str) and (not value or value.isspace())):
            missing.append(name)
        unwrapped.append(value)
    if missing:
        raise MissingFields(missing)
    return unwrapped


def parse_rfc3339(text: str, *, space_means_plus: bool = False) -> datetime:
    """Read an RFC 3339 date-time with an offset into an aware ``datetime``.

    Raises ``ValueError`` whose message says what is wrong. With ``space_means_plus`` a space
    before the offset's ``HH:MM`` is read as the ``+`` that a query string turns into a space
    when the client did not percent-encode it.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(
            "expected YYYY-MM-DDTHH:MM:SS, an optional fraction of 1 to 9 digits, then Z or ±HH:MM"
        )
    sign = match.group(8)
    # The common shape: datetime.fromisoformat (C, a tenth of the cost) reads it exactly as
    # below, once the one thing it allows and RFC 3339 does not is ruled out: offset minutes
    # above 59. Anything it refuses falls through, for a precise message.
    common = sign != " " and text[10] == "T" and text[-1] != "z" and text[:4] not in _EDGE_YEARS
    if common and (sign is None or (text[-5:-3] <= "23" and text[-2:] <= "59")):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    return _parse_rfc3339_fields(text, match, space_means_plus)


def _parse_rfc3339_fields(text: str, match: re.Match[str], space_means_plus: bool) -> datetime:
    year_text, month_text, day_text, hour_text, minute_text, second_text, fraction, sign = (
        match.group(1, 2, 3, 4, 5, 6, 7, 8)
    )
    year = int(year_text)
    month = int(month_text)
    day = int(day_text)
    hour = int(hour_text)
    minute = int(minute_text)
    second = int(second_text)
    if year == 0:
        raise ValueError("year 0000 is out of range 0001-9999")
    if not 1 <= month <= 12:
        raise ValueError(f"month {month_text} is out of range 01-12")
    if not 1 <= day <= _DAYS_IN_MONTH[month] and not (
        day == 29 and month == 2 and _is_leap_year(year)
    ):
        raise ValueError(f"day {day_text} does not exist in {year_text}-{month_text}")
    if hour > 23:
        raise ValueError(f"hour {hour_text} is out of range 00-23")
    if minute > 59:
        raise ValueError(f"minute {minute_text} is out of range 00-59")
    if second > 59:
        if second == 60:
            raise ValueError("leap seconds (second 60) are not accepted")
        raise ValueError(f"second {second_text} is out of range 00-59")
    if sign is None:
        tzinfo: timezone = UTC
    else:
        if sign == " " and not space_means_plus:
            raise ValueError("the offset needs a sign, + or -")
        # The regular expression ends with the offset, so its last 6 characters are it.
        offset = text[-6:]
        cached = _OFFSETS.get(offset)
        tzinfo = cached if cached is not None else _make_offset(offset)
    microsecond = 0
    if fraction is not None:
        microsecond = int(fraction[:_MICROSECOND_DIGITS].ljust(_MICROSECOND_DIGITS, "0"))
    moment = datetime(year, month, day, hour, minute, second, microsecond, tzinfo)
    if year == 1 or year == 9999:
        # Whoever uses the time converts it to UTC, which overflows within hours of the ends.
        try:
            moment.astimezone(UTC)
        except OverflowError:
            raise ValueError("the time falls outside years 0001-9999 in UTC") from None
    return moment


# A lookup keyed by every spelling of every code: one hash lookup, and no str.upper(), which
# maps some non-ASCII letters onto ASCII ones ("ß" to "SS", South Sudan).
_COUNTRY_BY_SPELLING: dict[str, str] = {
    spelling: code
    for code in ASSIGNED
    for spelling in (code, code.lower(), code[0] + code[1].lower(), code[0].lower() + code[1])
}

# [0-9], never \d: \d and int() also accept other scripts' digits, such as full-width ones.
_WEIGHT = re.compile(rf"(0|[1-9][0-9]*)(?:\.([0-9]{{1,{WEIGHT_DECIMALS}}}))?")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    rf"(?:\.([0-9]{{1,{MAX_FRACTION_DIGITS}}}))?"
    r"(?:[Zz]|([-+ ])([0-9]{2}):([0-9]{2}))"
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_NOT_IN_NAME = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)

# Years whose times can overflow when converted to UTC, or do not exist: the slow path only.
_EDGE_YEARS = frozenset({"0000", "0001", "9999"})
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# Offsets seen so far, by their text ("+08:00", " 08:00"): at most 3 x 24 x 60 entries.
_OFFSETS: dict[str, timezone] = {"+00:00": UTC, "-00:00": UTC, " 00:00": UTC}


def _check_country(value: object) -> str:
    if not isinstance(value, str):
        raise _not_a_string(value)
    code = _COUNTRY_BY_SPELLING.get(value)
    if code is None:
        raise ValueError(
            f"{_echo(value)} is not an assigned ISO 3166-1 alpha-2 country code; "
            "send two letters such as MY, in any case"
        )
    return code


def _check_weight(value: object, max_grams: int, max_whole_digits: int) -> tuple[int, str]:
    if isinstance(value, str):
        text = value
    elif isinstance(value, float):
        if not isfinite(value):
            raise ValueError(f"{value!r} is not a weight; send kilograms such as 1.234")
        text = repr(value)
        if "e" in text:
            # The shortest repr of a large or tiny float is in exponent form: spell it out.
            text = format(Decimal(text), "f")
    elif isinstance(value, int) and not isinstance(value, bool):
        # Compared as a number: str() of a very large int raises.
        if value <= 0:
            raise ValueError(_NOT_POSITIVE)
        if value * _GRAMS_PER_KG > max_grams:
            raise ValueError(_too_heavy(max_grams))
        return value * _GRAMS_PER_KG, str(value)
    else:
        raise _not_a_string(value, "a decimal string or a number")

    match = _WEIGHT.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{_echo(text)} is not a plain decimal number of kilograms; send digits "
            f"with at most {WEIGHT_DECIMALS} decimals and no leading zeros, such as 1.234"
        )
    whole, fraction = match.group(1, 2)
    # No leading zeros, so more digits means heavier; and int() of a long string raises.
    if len(whole) > max_whole_digits:
        raise ValueError(_too_heavy(max_grams))
    grams = _grams(whole, fraction)
    if grams == 0:
        raise ValueError(_NOT_POSITIVE)
    if grams > max_grams:
        raise ValueError(_too_heavy(max_grams))
    if fraction is not None:
        fraction = fraction.rstrip("0")
        if fraction:
            return grams, f"{whole}.{fraction}"
    return grams, whole


def _check_created_at(value: object) -> datetime:
    if not isinstance(value, str):
        raise _not_a_string(value)
    try:
        return parse_rfc3339(value, space_means_plus=True)
    except ValueError as exc:
        raise ValueError(
            f"{_echo(value)} is not an RFC 3339 date-time with an offset: {exc}; "
            "send one such as 2018-11-20T19:29:32+08:00"
        ) from None


def _check_customer_id(value: object) -> str:
    if not isinstance(value, str):
        raise _not_a_string(value)
    if _UUID.fullmatch(value) is None:
        raise ValueError(
            f"{_echo(value)} is not a UUID in 8-4-4-4-12 hex form; "
            "send one such as de619854-b59b-425e-9db4-943979e1bd49"
        )
    return value.lower()


def _check_customer_name(value: object) -> str:
    if not isinstance(value, str):
        raise _not_a_string(value)
    name = value.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"is {len(name)} characters long after trimming; send 1 to {MAX_NAME_LENGTH} characters"
        )
    bad = _NOT_IN_NAME.search(name)
    if bad is not None:
        raise ValueError(
            f"contains the control character U+{ord(bad.group()):04X}; send text without "
            "control, line separator or bidirectional override characters"
        )
    return name


def _check_customer_slug(value: object) -> str:
    if not isinstance(value, str):
        raise _not_a_string(value)
    if len(value) > MAX_SLUG_LENGTH:
        raise ValueError(
            f"is {len(value)} characters long; send at most {MAX_SLUG_LENGTH} characters"
        )
    if _SLUG.fullmatch(value) is None:
        raise ValueError(
            f"{_echo(value)} is not lower-case kebab case; send words of a-z and 0-9 "
            "joined by single hyphens, such as redbox-logistics"
        )
    return value


_NOT_POSITIVE = "is not greater than 0; send at least 0.001 kilograms"


def _too_heavy(max_grams: int) -> str:
    return f"is above the maximum weight; send at most {_kilograms(max_grams)} kilograms"


def _kilograms(grams: int) -> str:
    whole, rest = divmod(grams, _GRAMS_PER_KG)
    if rest:
        return f"{whole}.{rest:0{WEIGHT_DECIMALS}d}".rstrip("0")
    return str(whole)


def _grams(whole: str, fraction: str | None) -> int:
    grams = int(whole) * _GRAMS_PER_KG
    if fraction is not None:
        grams += int(fraction.ljust(WEIGHT_DECIMALS, "0"))
    return grams


# typed: otherwise True would share the entry of 1, and pass as one kilogram.
@lru_cache(maxsize=16, typed=True)
def _weight_limit(max_weight_kg: Decimal | float | str) -> tuple[int, int]:
    """The maximum in grams, and the digit count of its whole kilograms."""
    if isinstance(max_weight_kg, bool):
        match = None
    elif isinstance(max_weight_kg, int):
        match = _WEIGHT.fullmatch(str(max_weight_kg))
    elif isinstance(max_weight_kg, float):
        match = _WEIGHT.fullmatch(repr(max_weight_kg)) if isfinite(max_weight_kg) else None
    elif isinstance(max_weight_kg, Decimal):
        match = _WEIGHT.fullmatch(format(max_weight_kg, "f")) if max_weight_kg.is_finite() else None
    else:
        match = _WEIGHT.fullmatch(max_weight_kg)
    grams = 0 if match is None else _grams(*match.group(1, 2))
    if grams == 0:
        raise ValueError(
            f"max_weight_kg {max_weight_kg!r} is not a weight greater than 0 "
            f"with at most {WEIGHT_DECIMALS} decimals"
        )
    return grams, len(str(grams // _GRAMS_PER_KG))


def _make_offset(text: str) -> timezone:
    """The time zone for an offset such as "+08:00", checked, and remembered."""
    hours = int(text[1:3])
    minutes = int(text[4:6])
    if hours > 23:
        raise ValueError(f"offset hour {text[1:3]} is out of range 00-23")
    if minutes > 59:
        raise ValueError(f"offset minute {text[4:6]} is out of range 00-59")
    delta = timedelta(hours=hours, minutes=minutes)
    tzinfo = timezone(-delta if text[0] == "-" else delta)
    _OFFSETS[text] = tzinfo
    return tzinfo


def _is_leap_year(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _echo(text: str) -> str:
    """A short, escaped prefix of the input, for a message."""
    if len(text) <= ECHO_LENGTH:
        return repr(text)
    return repr(text[:ECHO_LENGTH]) + "..."


def _not_a_string(value: object, expected: str = "a string") -> ValueError:
    if isinstance(value, (list, tuple)):
        return ValueError("given more than once; send it once")
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, (int, float)):
        kind = "a number"
    elif isinstance(value, dict):
        kind = "an object"
    else:
        kind = f"a {type(value).__name__}"
    return ValueError(f"must be {expected}, not {kind}")

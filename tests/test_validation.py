"""The parcel request contract (DESIGN §2): what passes, in what form, and what is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from conftest import SAMPLE_QUERY
from hypothesis import given, settings
from hypothesis import strategies as st

from snowflake_tracker.countries import ASSIGNED
from snowflake_tracker.validation import (
    ECHO_LENGTH,
    FIELDS,
    INVALID_MESSAGE,
    MAX_NAME_LENGTH,
    MAX_SLUG_LENGTH,
    MISSING_MESSAGE,
    MissingFields,
    Parcel,
    ValidationError,
    parse_rfc3339,
    validate_parcel,
)

# The DESIGN §1 example request, its query string decoded (shared with the HTTP tests).
SAMPLE: dict[str, object] = dict(SAMPLE_QUERY)

# Long enough for any message, whatever the input: the fixed text plus an escaped prefix.
MAX_MESSAGE_LENGTH = 400

PLUS_EIGHT = timezone(timedelta(hours=8))


def parcel_with(**overrides: object) -> Parcel:
    """The sample parcel with some parameters replaced, validated."""
    return validate_parcel({**SAMPLE, **overrides})


def errors_with(**overrides: object) -> dict[str, str]:
    """The errors for the sample with some parameters replaced; fails when it passes."""
    with pytest.raises(ValidationError) as info:
        parcel_with(**overrides)
    return info.value.errors


def test_the_design_example_passes_in_canonical_form() -> None:
    """The DESIGN §1 example validates to exactly the values it spells."""
    assert validate_parcel(SAMPLE) == Parcel(
        origin_country_id="MY",
        destination_country_id="ID",
        weight_grams=1234,
        weight="1.234",
        created_at=datetime(2018, 11, 20, 19, 29, 32, tzinfo=PLUS_EIGHT),
        customer_id="de619854-b59b-425e-9db4-943979e1bd49",
        customer_name="RedBox Logistics",
        customer_slug="redbox-logistics",
    )


def test_fields_are_the_seven_in_contract_order() -> None:
    """FIELDS names the seven parameters in the order of the contract."""
    assert tuple(SAMPLE) == FIELDS


def test_unknown_parameters_are_ignored() -> None:
    """Parameters outside the contract neither help nor hurt."""
    assert parcel_with(utm_source="x", weight_kg="nonsense") == validate_parcel(SAMPLE)


# Countries


@pytest.mark.parametrize(
    ("value", "expected"),
    [("MY", "MY"), ("my", "MY"), ("My", "MY"), ("mY", "MY"), ("gb", "GB"), ("qa", "QA")],
)
@pytest.mark.parametrize("field", ["origin_country_id", "destination_country_id"])
def test_countries_are_accepted_in_any_case_and_answered_upper_case(
    field: str, value: str, expected: str
) -> None:
    """An assigned code in any case comes back upper-case."""
    assert getattr(parcel_with(**{field: value}), field) == expected


@pytest.mark.parametrize(
    "value",
    [
        "XX",  # user-assigned
        "xx",
        "ZZ",  # user-assigned
        "zz",
        "AA",  # user-assigned
        "XK",  # user-assigned, though used for Kosovo
        "UK",  # reserved, not assigned: Great Britain is GB
        "MYS",  # alpha-3
        "M",
        "M1",
        " MY",
        "MY ",
        "MY\n",
        "\uff2d\uff39",  # full-width MY
        "\u00df",  # upper-cases to "SS", South Sudan
        "\u0131t",  # dotless i: upper-cases to "IT", Italy
        "Malaysia",
    ],
)
@pytest.mark.parametrize("field", ["origin_country_id", "destination_country_id"])
def test_other_country_codes_are_rejected(field: str, value: str) -> None:
    """Anything but an assigned alpha-2 code is an error naming what is allowed."""
    errors = errors_with(**{field: value})
    assert list(errors) == [field]
    assert "ISO 3166-1 alpha-2" in errors[field]


# Weight


@pytest.mark.parametrize(
    ("value", "grams", "canonical"),
    [
        ("1.234", 1234, "1.234"),
        ("1", 1000, "1"),
        ("0.001", 1, "0.001"),
        ("0.5", 500, "0.5"),
        ("0.05", 50, "0.05"),
        ("1.500", 1500, "1.5"),
        ("2.0", 2000, "2"),
        ("2.000", 2000, "2"),
        ("10.05", 10050, "10.05"),
        ("999.999", 999_999, "999.999"),
        ("1000", 1_000_000, "1000"),
        ("1000.000", 1_000_000, "1000"),
    ],
)
def test_decimal_weights_convert_exactly_to_grams(value: str, grams: int, canonical: str) -> None:
    """A plain decimal of kilograms becomes exact grams and its shortest spelling."""
    parcel = parcel_with(weight=value)
    assert (parcel.weight_grams, parcel.weight) == (grams, canonical)


@pytest.mark.parametrize(
    ("value", "grams", "canonical"),
    [
        (1, 1000, "1"),
        (1000, 1_000_000, "1000"),
        (1.5, 1500, "1.5"),
        (1.0, 1000, "1"),
        (0.001, 1, "0.001"),
        (0.1, 100, "0.1"),
        (1.234, 1234, "1.234"),
    ],
)
def test_json_numbers_are_weights_too(value: float, grams: int, canonical: str) -> None:
    """A JSON number is read exactly as its shortest decimal spelling."""
    parcel = parcel_with(weight=value)
    assert (parcel.weight_grams, parcel.weight) == (grams, canonical)


@pytest.mark.parametrize(
    "value",
    [
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1e3",
        "1E3",
        "1_000",
        "-1",
        "+1",
        "-0",
        "1.2345",
        "1.0000",
        " 1",
        "1 ",
        "1\n",
        "1.",
        ".5",
        "0x10",
        "1,5",
        "1.2.3",
        "01.5",  # leading zeros: one spelling per weight
        "00",
        "007",
        "\uff11",  # full-width 1
        "\u0661",  # Arabic-Indic 1
        "1\u0662",  # ASCII 1, Arabic-Indic 2
        "1 kg",
    ],
)
def test_malformed_weights_are_rejected(value: str) -> None:
    """Anything but a plain ASCII decimal with at most 3 decimals is refused."""
    errors = errors_with(weight=value)
    assert list(errors) == ["weight"]
    assert "plain decimal" in errors["weight"]


@pytest.mark.parametrize(
    "value",
    ["0", "0.0", "0.000", 0, -1, 0.0, -0.0, -1.5, pytest.param(-(10**5000), id="-10**5000")],
)
def test_weights_must_be_greater_than_zero(value: object) -> None:
    """Zero and negative weights are refused, as strings or as numbers."""
    errors = errors_with(weight=value)
    assert list(errors) == ["weight"]


@pytest.mark.parametrize(
    "value",
    [
        "1000.001",
        "1001",
        "9" * 30,
        pytest.param("1" * 5000, id="5000 digits"),
        1001,
        pytest.param(10**5000, id="10**5000"),
        1e16,
        1e300,
    ],
)
def test_weights_above_the_maximum_are_rejected_without_parsing_huge_numbers(
    value: object,
) -> None:
    """Too heavy is refused with the maximum named, however many digits were sent."""
    errors = errors_with(weight=value)
    assert errors["weight"] == "is above the maximum weight; send at most 1000 kilograms"


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf"), 1e-7, 0.30000000000000004, 1.2345],
)
def test_json_floats_follow_the_same_rules(value: float) -> None:
    """Non-finite floats and floats with more than 3 decimals are refused."""
    assert list(errors_with(weight=value)) == ["weight"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "must be a decimal string or a number, not a boolean"),
        (False, "must be a decimal string or a number, not a boolean"),
        ({"kg": 1}, "must be a decimal string or a number, not an object"),
    ],
)
def test_other_json_types_are_not_weights(value: object, expected: str) -> None:
    """Booleans and objects are not weights, though 1 and 0 would be."""
    assert errors_with(weight=value) == {"weight": expected}


@pytest.mark.parametrize(
    ("limit", "accepted", "refused"),
    [
        (5, "5", "5.001"),
        (Decimal("2.5"), "2.5", "2.501"),
        ("2.5", "2.500", "2.501"),
        (2.5, "0.001", "3"),
        (Decimal("1E+3"), "1000", "1000.001"),
    ],
)
def test_the_maximum_weight_is_configurable(
    limit: Decimal | float | str, accepted: str, refused: str
) -> None:
    """The configured maximum is inclusive, whatever type the configuration holds it in."""
    params = {**SAMPLE, "weight": accepted}
    assert validate_parcel(params, max_weight_kg=limit).weight_grams > 0
    with pytest.raises(ValidationError) as info:
        validate_parcel({**SAMPLE, "weight": refused}, max_weight_kg=limit)
    assert "send at most" in info.value.errors["weight"]


@pytest.mark.parametrize(
    "limit", [0, -1, "0", "1.2345", "1e3", True, float("nan"), float("inf"), Decimal("NaN")]
)
def test_a_bad_maximum_weight_is_a_configuration_error(limit: Decimal | float | str) -> None:
    """A maximum that is not a weight fails naming the setting, not as a request error."""
    with pytest.raises(ValueError, match="max_weight_kg") as info:
        validate_parcel(SAMPLE, max_weight_kg=limit)
    assert not isinstance(info.value, ValidationError)


def test_a_boolean_maximum_is_refused_even_after_its_integer_twin() -> None:
    """max_weight_kg=True is refused although True == 1 and 1 is a valid maximum."""
    assert validate_parcel({**SAMPLE, "weight": "1"}, max_weight_kg=1).weight_grams == 1000
    with pytest.raises(ValueError, match="max_weight_kg"):
        validate_parcel(SAMPLE, max_weight_kg=True)


# created_at


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2018-11-20T19:29:32+08:00", datetime(2018, 11, 20, 19, 29, 32, tzinfo=PLUS_EIGHT)),
        # The unencoded "+" of the DESIGN §1 example, read back as a space.
        ("2018-11-20T19:29:32 08:00", datetime(2018, 11, 20, 19, 29, 32, tzinfo=PLUS_EIGHT)),
        ("2018-11-20T11:29:32Z", datetime(2018, 11, 20, 11, 29, 32, tzinfo=UTC)),
        ("2018-11-20t11:29:32z", datetime(2018, 11, 20, 11, 29, 32, tzinfo=UTC)),
        ("2018-11-20T11:29:32-00:00", datetime(2018, 11, 20, 11, 29, 32, tzinfo=UTC)),
        ("2018-11-20T11:29:32+00:00", datetime(2018, 11, 20, 11, 29, 32, tzinfo=UTC)),
        (
            "2018-11-20T19:29:32-05:30",
            datetime(2018, 11, 20, 19, 29, 32, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
        (
            "2018-11-20T00:00:00+23:59",
            datetime(2018, 11, 20, tzinfo=timezone(timedelta(hours=23, minutes=59))),
        ),
        (
            "2018-11-20T00:00:00-23:59",
            datetime(2018, 11, 20, tzinfo=timezone(-timedelta(hours=23, minutes=59))),
        ),
        ("2018-11-20T19:29:32.5Z", datetime(2018, 11, 20, 19, 29, 32, 500_000, tzinfo=UTC)),
        ("2018-11-20T19:29:32.000001Z", datetime(2018, 11, 20, 19, 29, 32, 1, tzinfo=UTC)),
        # Nanoseconds are truncated, never rounded into the next second.
        ("2018-11-20T19:29:32.123456789Z", datetime(2018, 11, 20, 19, 29, 32, 123456, tzinfo=UTC)),
        ("2018-11-20T23:59:59.999999999Z", datetime(2018, 11, 20, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2024-02-29T12:00:00Z", datetime(2024, 2, 29, 12, tzinfo=UTC)),
        ("2000-02-29T12:00:00Z", datetime(2000, 2, 29, 12, tzinfo=UTC)),
        ("2023-12-31T23:59:59Z", datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_rfc3339_times_with_an_offset_pass(value: str, expected: datetime) -> None:
    """Strict RFC 3339 with Z or ±HH:MM gives the same instant and the same offset."""
    created_at = parcel_with(created_at=value).created_at
    assert created_at == expected
    assert created_at.utcoffset() == expected.utcoffset()
    assert created_at.microsecond == expected.microsecond


@pytest.mark.parametrize(
    "value",
    [
        "2018-11-20T19:29:32",  # no offset
        "2018-11-20",  # date only
        "2018-11-20T19:29:32+0800",  # offset without colon
        "2018-11-20T19:29:32+08",
        "2018-11-20T19:29:32+08:00:00",
        "2018-11-20T19:29:32 +08:00",
        "2018-11-20T19:29:32UTC",
        "2018-11-20 19:29:32+08:00",  # space separator: not by agreement here
        "2018-11-20T19:29+08:00",  # no seconds
        "2018-11-20T19:29:32.Z",  # empty fraction
        "2018-11-20T19:29:32.1234567890Z",  # more than 9 fraction digits
        "2018-11-20T19:29:32,5Z",  # ISO 8601's comma, not RFC 3339
        "18-11-20T19:29:32Z",
        "2018-1-20T19:29:32Z",
        "20181120T192932Z",
        "2018-11-20T24:00:00Z",  # 24:00
        "2018-11-20T25:00:00Z",
        "2018-11-20T19:60:00Z",
        "2018-11-20T19:29:61Z",
        "2016-12-31T23:59:60Z",  # leap second
        "2018-13-01T00:00:00Z",
        "2018-00-01T00:00:00Z",
        "2018-11-00T00:00:00Z",
        "2018-11-31T00:00:00Z",
        "2018-04-31T00:00:00Z",
        "2018-01-32T00:00:00Z",
        "2023-02-29T00:00:00Z",  # not a leap year
        "1900-02-29T00:00:00Z",  # divisible by 100, not by 400
        "2024-02-30T00:00:00Z",
        "2018-11-20T19:29:32+24:00",  # offsets beyond ±23:59
        "2018-11-20T19:29:32-24:00",
        "2018-11-20T19:29:32+08:60",
        "2018-11-20T19:29:32+99:99",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+00:01",  # before year 1 in UTC
        "9999-12-31T23:59:59-00:01",  # after year 9999 in UTC
        " 2018-11-20T19:29:32Z",
        "2018-11-20T19:29:32Z ",
        "2018-11-20T19:29:32Z\n",
        "\uff12018-11-20T19:29:32Z",  # a full-width digit
        "2018-11-20T19:29:32\u00b108:00",  # the ± sign itself
        "1542713372",
    ],
)
def test_other_times_are_rejected(value: str) -> None:
    """Anything but an RFC 3339 date-time with a valid offset and calendar date is refused."""
    errors = errors_with(created_at=value)
    assert list(errors) == ["created_at"]
    assert "RFC 3339" in errors["created_at"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2023-02-29T00:00:00Z", "day 29 does not exist in 2023-02"),
        ("2018-11-20T24:00:00Z", "hour 24 is out of range 00-23"),
        ("2016-12-31T23:59:60Z", "leap seconds (second 60) are not accepted"),
        ("2018-11-20T19:29:32+24:00", "offset hour 24 is out of range 00-23"),
        ("2018-11-20T19:29:32+08:60", "offset minute 60 is out of range 00-59"),
        ("2018-11-20T19:29:32 08:00", "the offset needs a sign, + or -"),
        ("2018-11-20T19:29:32+0800", "expected YYYY-MM-DDTHH:MM:SS"),
    ],
)
def test_parse_rfc3339_says_what_is_wrong(value: str, reason: str) -> None:
    """parse_rfc3339 raises ValueError with the reason, and reads a space as no sign."""
    with pytest.raises(ValueError) as info:
        parse_rfc3339(value)
    assert str(info.value).startswith(reason)


def test_parse_rfc3339_reads_a_space_as_plus_when_asked() -> None:
    """With space_means_plus, a space before HH:MM is the + a query string lost."""
    assert parse_rfc3339("2018-11-20T19:29:32 08:00", space_means_plus=True) == datetime(
        2018, 11, 20, 19, 29, 32, tzinfo=PLUS_EIGHT
    )


# customer_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("de619854-b59b-425e-9db4-943979e1bd49", "de619854-b59b-425e-9db4-943979e1bd49"),
        ("DE619854-B59B-425E-9DB4-943979E1BD49", "de619854-b59b-425e-9db4-943979e1bd49"),
        ("De619854-b59B-425e-9dB4-943979e1Bd49", "de619854-b59b-425e-9db4-943979e1bd49"),
        ("00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000"),
    ],
)
def test_canonical_uuids_pass_lower_cased(value: str, expected: str) -> None:
    """A canonical 8-4-4-4-12 UUID in any case comes back lower-case."""
    assert parcel_with(customer_id=value).customer_id == expected


@pytest.mark.parametrize(
    "value",
    [
        "{de619854-b59b-425e-9db4-943979e1bd49}",
        "urn:uuid:de619854-b59b-425e-9db4-943979e1bd49",
        "de619854b59b425e9db4943979e1bd49",
        " de619854-b59b-425e-9db4-943979e1bd49",
        "de619854-b59b-425e-9db4-943979e1bd49 ",
        "de619854-b59b-425e-9db4-943979e1bd49\n",
        "de619854 b59b 425e 9db4 943979e1bd49",
        "de619854-b59b-425e-9db4-943979e1bd4",
        "de619854-b59b-425e-9db4-943979e1bd490",
        "de619854-b59b-425e9-db4-943979e1bd49",
        "ge619854-b59b-425e-9db4-943979e1bd49",
        "\uff44e619854-b59b-425e-9db4-943979e1bd49",  # full-width d
        "redbox",
    ],
)
def test_other_uuid_forms_are_rejected(value: str) -> None:
    """Braces, URNs, no hyphens, whitespace and non-hex are refused."""
    errors = errors_with(customer_id=value)
    assert list(errors) == ["customer_id"]
    assert "8-4-4-4-12" in errors["customer_id"]


# customer_name


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("RedBox Logistics", "RedBox Logistics"),
        ("  RedBox Logistics \t\n", "RedBox Logistics"),
        ("\u3000RedBox\u00a0Logistics\u3000", "RedBox\u00a0Logistics"),
        ("R", "R"),
        ("x" * MAX_NAME_LENGTH, "x" * MAX_NAME_LENGTH),
        (" " + "x" * MAX_NAME_LENGTH + " ", "x" * MAX_NAME_LENGTH),
        ("O'Brien & Sons, Ltd.", "O'Brien & Sons, Ltd."),
        (
            "\u682a\u5f0f\u4f1a\u793e\u30ec\u30c3\u30c9",
            "\u682a\u5f0f\u4f1a\u793e\u30ec\u30c3\u30c9",
        ),
        # Zero-width non-joiner, needed to write Persian.
        (
            "\u0645\u06cc\u200c\u062e\u0648\u0627\u0645",
            "\u0645\u06cc\u200c\u062e\u0648\u0627\u0645",
        ),
        # Zero-width joiners inside an emoji family.
        ("\U0001f469\u200d\U0001f467 Freight", "\U0001f469\u200d\U0001f467 Freight"),
        ("Red\u00adBox", "Red\u00adBox"),  # soft hyphen
    ],
)
def test_names_pass_trimmed(value: str, expected: str) -> None:
    """A name of 1 to 200 characters after trimming passes, trimmed, in any script."""
    assert parcel_with(customer_name=value).customer_name == expected


@pytest.mark.parametrize(
    "value",
    [
        "Red\x00Box",
        "Red\x07Box",
        "Red\x1b[31mBox",
        "Red\nBox",
        "Red\rBox",
        "Red\tBox",
        "Red\x7fBox",
        "Red\x85Box",  # NEL, a C1 control
        "Red\x9bBox",
        "Red\u2028Box",  # line separator
        "Red\u2029Box",  # paragraph separator
        "Red\u202eBox",  # right-to-left override
        "Red\u202aBox",
        "Red\u2066Box",  # left-to-right isolate
        "Red\u2069Box",
        "Red\ud800Box",  # a lone surrogate
    ],
)
def test_names_with_control_characters_are_rejected(value: str) -> None:
    """Control, separator and bidirectional override characters inside a name are refused."""
    errors = errors_with(customer_name=value)
    assert list(errors) == ["customer_name"]
    assert errors["customer_name"].startswith("contains the control character U+")


@pytest.mark.parametrize("length", [MAX_NAME_LENGTH + 1, 10_000])
def test_long_names_are_rejected_with_a_short_message(length: int) -> None:
    """A name longer than 200 characters is refused with its length, not its text."""
    errors = errors_with(customer_name="x" * length)
    assert errors["customer_name"] == (
        f"is {length} characters long after trimming; send 1 to 200 characters"
    )


# customer_slug


@pytest.mark.parametrize(
    "value", ["redbox-logistics", "redbox", "a", "0", "a1-b2-c3", "x" * MAX_SLUG_LENGTH]
)
def test_kebab_case_slugs_pass(value: str) -> None:
    """Lower-case words of a-z and 0-9 joined by single hyphens pass unchanged."""
    assert parcel_with(customer_slug=value).customer_slug == value


@pytest.mark.parametrize(
    "value",
    [
        "RedBox",
        "redbox_logistics",
        "redbox logistics",
        "-redbox",
        "redbox-",
        "red--box",
        "redbox\n",
        " redbox",
        "r\u00e9dbox",
        "\uff52edbox",  # full-width r
        "redbox.com",
        "x" * (MAX_SLUG_LENGTH + 1),
    ],
)
def test_other_slugs_are_rejected(value: str) -> None:
    """Upper case, underscores, spaces, stray hyphens, non-ASCII and over 100 chars are refused."""
    assert list(errors_with(customer_slug=value)) == ["customer_slug"]


# Missing, repeated and mistyped parameters


def test_nothing_given_means_every_field_is_missing() -> None:
    """An empty request lists all seven fields as missing, in contract order."""
    with pytest.raises(MissingFields) as info:
        validate_parcel({})
    assert info.value.missing == list(FIELDS)
    assert str(info.value) == MISSING_MESSAGE == "All parameters are required"


@pytest.mark.parametrize("blank", ["", " ", "\t\n", "\u3000", None, [], [""], ("  ",)])
@pytest.mark.parametrize("field", FIELDS)
def test_absent_or_blank_parameters_are_missing(field: str, blank: object) -> None:
    """A parameter that is absent, null, empty or only whitespace is missing."""
    with pytest.raises(MissingFields) as info:
        parcel_with(**{field: blank})
    assert info.value.missing == [field]
    params = dict(SAMPLE)
    del params[field]
    with pytest.raises(MissingFields) as info:
        validate_parcel(params)
    assert info.value.missing == [field]


def test_missing_is_reported_before_anything_else() -> None:
    """When some fields are missing, invalid ones are not looked at."""
    with pytest.raises(MissingFields) as info:
        validate_parcel({"customer_slug": "Not A Slug", "weight": "nan", "created_at": ""})
    assert info.value.missing == [
        "origin_country_id",
        "destination_country_id",
        "created_at",
        "customer_id",
        "customer_name",
    ]


@pytest.mark.parametrize("container", [list, tuple])
@pytest.mark.parametrize("field", FIELDS)
def test_repeated_parameters_are_rejected(field: str, container: type) -> None:
    """A parameter given twice, even with the same value, is an error for that field."""
    value = SAMPLE[field]
    assert errors_with(**{field: container([value, value])}) == {
        field: "given more than once; send it once"
    }


@pytest.mark.parametrize("field", FIELDS)
def test_a_parameter_given_once_as_a_list_is_that_value(field: str) -> None:
    """A one-element list, as a multi-valued query yields, counts as its one value."""
    assert parcel_with(**{field: [SAMPLE[field]]}) == validate_parcel(SAMPLE)


@pytest.mark.parametrize(
    ("value", "kind"),
    [(1, "a number"), (1.5, "a number"), (True, "a boolean"), ({"a": "b"}, "an object")],
)
@pytest.mark.parametrize("field", [field for field in FIELDS if field != "weight"])
def test_non_string_values_are_rejected(field: str, value: object, kind: str) -> None:
    """A JSON value that is not a string is refused, saying what type it was."""
    assert errors_with(**{field: value}) == {field: f"must be a string, not {kind}"}


def test_every_bad_field_is_reported_at_once() -> None:
    """One ValidationError lists every invalid field, with one readable sentence as str()."""
    with pytest.raises(ValidationError) as info:
        validate_parcel(
            {
                "origin_country_id": "XX",
                "destination_country_id": "MYS",
                "weight": "1e3",
                "created_at": "2018-11-20T19:29:32",
                "customer_id": "{de619854-b59b-425e-9db4-943979e1bd49}",
                "customer_name": "Red\x00Box",
                "customer_slug": "RedBox",
            }
        )
    assert set(info.value.errors) == set(FIELDS)
    assert str(info.value) == INVALID_MESSAGE
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("field", FIELDS)
def test_messages_echo_only_a_short_escaped_prefix(field: str) -> None:
    """A message shows at most 20 characters of the input, with controls escaped."""
    value = "\x1b[2J" + "q" * (ECHO_LENGTH - 4) + "TAIL-NEVER-SHOWN" * 1000
    message = errors_with(**{field: value})[field]
    assert "TAIL" not in message
    assert "\x1b" not in message
    assert len(message) <= MAX_MESSAGE_LENGTH


# Properties over generated input

JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
PARAMETER_VALUES = (
    st.text()
    | st.sampled_from(["1", "0.001", "MY", "2018-11-20T19:29:32Z", "-", " ", "1e3", "24:00"])
    | st.lists(st.text(max_size=8), max_size=3)
    | st.tuples(st.text(max_size=8))
    | JSON_LIKE
)


@settings(max_examples=300)
@given(
    overrides=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), PARAMETER_VALUES),
    dropped=st.sets(st.sampled_from(FIELDS), max_size=2),
)
def test_arbitrary_input_raises_only_the_contract_errors(
    overrides: dict[str, object], dropped: set[str]
) -> None:
    """Whatever arrives, the answer is a Parcel, MissingFields or a bounded ValidationError."""
    params = {**SAMPLE, **overrides}
    for field in dropped:
        params.pop(field, None)
    try:
        validate_parcel(params)
    except MissingFields as exc:
        assert exc.missing
        assert set(exc.missing) <= set(FIELDS)
    except ValidationError as exc:
        assert exc.errors
        assert set(exc.errors) <= set(overrides)
        assert all(len(message) <= MAX_MESSAGE_LENGTH for message in exc.errors.values())


# Any code point, lone surrogates and controls included: what a decoded query or JSON string can
# hold at worst (st.text() leaves surrogates out by default).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=300)


@settings(max_examples=300)
@given(
    overrides=st.dictionaries(
        st.sampled_from(FIELDS), ANY_TEXT | st.lists(ANY_TEXT, max_size=2), min_size=1
    ),
    max_weight=st.sampled_from([Decimal("0.001"), Decimal(1), Decimal(1000), Decimal(10**9)]),
)
def test_any_text_in_any_field_raises_only_the_contract_errors(
    overrides: dict[str, object], max_weight: Decimal
) -> None:
    """Text of any code points in any field, under any maximum weight, gives a Parcel,
    MissingFields or a bounded ValidationError, never another exception."""
    try:
        validate_parcel({**SAMPLE, **overrides}, max_weight_kg=max_weight)
    except MissingFields as exc:
        assert set(exc.missing) <= set(overrides)
    except ValidationError as exc:
        assert set(exc.errors) <= set(overrides) | {"weight"}
        assert all(len(message) <= MAX_MESSAGE_LENGTH for message in exc.errors.values())


@given(field=st.sampled_from(FIELDS), value=st.text(min_size=1, max_size=5000))
def test_messages_are_bounded_whatever_the_text(field: str, value: str) -> None:
    """No error message grows with its input."""
    try:
        parcel_with(**{field: value})
    except MissingFields as exc:
        assert exc.missing == [field]
    except ValidationError as exc:
        assert len(exc.errors[field]) <= MAX_MESSAGE_LENGTH


def mixed_case(text: str, data: st.DataObject) -> str:
    """The text with each letter's case drawn at random."""
    flips = data.draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.swapcase() if flip else c for c, flip in zip(text, flips, strict=True))


def render_weight(grams: int, data: st.DataObject) -> str:
    """A decimal spelling of ``grams`` with 0 to 3 decimals, padded with zeros at random."""
    whole, rest = divmod(grams, 1000)
    decimals = f"{rest:03d}".rstrip("0")
    decimals += "0" * data.draw(st.integers(0, 3 - len(decimals)))
    return f"{whole}.{decimals}" if decimals else str(whole)


OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
TIMES = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=OFFSETS
)
NAME_TEXT = st.text(
    st.characters(
        exclude_categories=("Cc", "Cs", "Zl", "Zp"),
        exclude_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
    ),
    min_size=1,
    max_size=MAX_NAME_LENGTH,
).filter(lambda name: not name.isspace())
SLUGS = st.from_regex(r"[a-z0-9]+(-[a-z0-9]+)*", fullmatch=True).filter(
    lambda slug: len(slug) <= MAX_SLUG_LENGTH
)


def render_time(moment: datetime, data: st.DataObject) -> str:
    """An RFC 3339 spelling of ``moment``: a random case, fraction length and offset form."""
    text = moment.replace(tzinfo=None).isoformat(timespec="seconds")
    if moment.microsecond or data.draw(st.booleans()):
        digits = data.draw(st.integers(6, 9))
        text += "." + f"{moment.microsecond:06d}".ljust(digits, data.draw(st.sampled_from("09")))
    offset = moment.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0 and data.draw(st.booleans()):
        text += "Z"
    else:
        sign = "-" if minutes < 0 else data.draw(st.sampled_from("+ "))
        text += f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return mixed_case(text, data) if data.draw(st.booleans()) else text


@given(
    origin=st.sampled_from(sorted(ASSIGNED)),
    destination=st.sampled_from(sorted(ASSIGNED)),
    grams=st.integers(1, 1_000_000),
    moment=TIMES,
    customer=st.uuids(),
    name=NAME_TEXT,
    slug=SLUGS,
    data=st.data(),
)
def test_valid_parcels_always_pass(
    origin: str,
    destination: str,
    grams: int,
    moment: datetime,
    customer: uuid.UUID,
    name: str,
    slug: str,
    data: st.DataObject,
) -> None:
    """Any parcel built within the rules passes, and comes back in canonical form."""
    weight = render_weight(grams, data)
    padding = data.draw(st.sampled_from(["", " ", "\t", "\u3000 "]))
    parcel = validate_parcel(
        {
            "origin_country_id": mixed_case(origin, data),
            "destination_country_id": mixed_case(destination, data),
            "weight": weight,
            "created_at": render_time(moment, data),
            "customer_id": mixed_case(str(customer), data),
            "customer_name": padding + name + padding,
            "customer_slug": slug,
        }
    )
    assert parcel.origin_country_id == origin
    assert parcel.destination_country_id == destination
    assert parcel.weight_grams == grams
    assert Decimal(parcel.weight) * 1000 == grams
    assert parcel.weight == (weight.rstrip("0").rstrip(".") if "." in weight else weight)
    assert parcel.created_at == moment
    assert parcel.created_at.utcoffset() == moment.utcoffset()
    assert parcel.customer_id == str(customer)
    assert parcel.customer_name == name.strip()
    assert parcel.customer_slug == slug


@given(moment=TIMES)
def test_isoformat_output_reads_back_as_the_same_time(moment: datetime) -> None:
    """parse_rfc3339 reads what datetime.isoformat() writes for an aware time."""
    parsed = parse_rfc3339(moment.isoformat())
    assert parsed == moment
    assert parsed.utcoffset() == moment.utcoffset()
    assert parsed.microsecond == moment.microsecond


_TWO_DIGITS = st.integers(0, 99).map("{:02d}".format)


@settings(max_examples=3000, deadline=None)
@given(
    year=st.sampled_from(["0000", "0001", "1900", "2000", "2023", "2024", "9999"]),
    month=_TWO_DIGITS,
    day=_TWO_DIGITS,
    hour=_TWO_DIGITS,
    minute=_TWO_DIGITS,
    second=_TWO_DIGITS,
    fraction=st.sampled_from(["", ".1", ".123456", ".1234567", ".123456789"]),
    offset=st.one_of(
        st.sampled_from(["Z", "z"]),
        st.tuples(st.sampled_from("+- "), _TWO_DIGITS, _TWO_DIGITS).map(
            lambda parts: f"{parts[0]}{parts[1]}:{parts[2]}"
        ),
    ),
    separator=st.sampled_from("Tt"),
)
def test_the_fast_rfc3339_path_agrees_with_the_field_by_field_parser(
    year: str,
    month: str,
    day: str,
    hour: str,
    minute: str,
    second: str,
    fraction: str,
    offset: str,
    separator: str,
) -> None:
    """For every well-shaped date-time, the fast path accepts and reads exactly what the
    field-by-field parser does, and refuses exactly what it refuses."""
    from snowflake_tracker import validation

    text = f"{year}-{month}-{day}{separator}{hour}:{minute}:{second}{fraction}{offset}"
    match = validation._RFC3339.fullmatch(text)
    assert match is not None
    try:
        expected: datetime | None = validation._parse_rfc3339_fields(text, match, True)
    except ValueError:
        expected = None
    try:
        got: datetime | None = parse_rfc3339(text, space_means_plus=True)
    except ValueError:
        got = None
    assert got == expected
    if got is not None and expected is not None:
        assert got.utcoffset() == expected.utcoffset()

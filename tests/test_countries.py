"""The assigned ISO 3166-1 alpha-2 codes: pycountry's list, without the user-assigned ones."""

from __future__ import annotations

import pycountry
import pytest

from snowflake_tracker.countries import ASSIGNED, USER_ASSIGNED


def test_every_code_is_two_upper_case_ascii_letters() -> None:
    """Each assigned code is exactly two letters A to Z."""
    assert isinstance(ASSIGNED, frozenset)
    assert all(len(code) == 2 and code.isascii() and code.isupper() for code in ASSIGNED)
    assert all(code.isalpha() for code in ASSIGNED)


def test_the_set_is_pycountrys_list_less_user_assigned_codes() -> None:
    """Nothing but user-assigned codes is dropped from pycountry's list."""
    listed = {country.alpha_2 for country in pycountry.countries}
    assert listed - USER_ASSIGNED == ASSIGNED
    assert len(ASSIGNED) >= 240


def test_user_assigned_codes_are_the_iso_ranges() -> None:
    """The user-assigned range is AA, QM to QZ, XA to XZ and ZZ: 42 codes."""
    assert len(USER_ASSIGNED) == 1 + 14 + 26 + 1
    assert {"AA", "QM", "QZ", "XA", "XZ", "ZZ"} <= USER_ASSIGNED
    assert "QL" not in USER_ASSIGNED
    assert ASSIGNED.isdisjoint(USER_ASSIGNED)


@pytest.mark.parametrize("code", ["MY", "ID", "US", "GB", "QA", "SS", "AQ", "HK"])
def test_real_countries_are_assigned(code: str) -> None:
    """Real countries and territories are in the set, Qatar despite its Q."""
    assert code in ASSIGNED


@pytest.mark.parametrize("code", ["XX", "ZZ", "AA", "QM", "QZ", "XK", "UK", "EU", "my", "MYS"])
def test_unassigned_and_user_assigned_codes_are_not(code: str) -> None:
    """User-assigned, reserved, lower-case and 3-letter codes are not in the set."""
    assert code not in ASSIGNED

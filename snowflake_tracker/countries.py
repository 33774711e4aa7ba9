"""The assigned ISO 3166-1 alpha-2 country codes, read once from pycountry at import.

A tracking number starts with its origin's code (DESIGN §3), so only codes that name a real
country or territory are accepted. ISO 3166-1 §7.5 leaves some code elements to users
(``AA``, ``QM`` to ``QZ``, ``XA`` to ``XZ``, ``ZZ``): anyone may give them any meaning (``XK``
for Kosovo, ``XX`` for "unknown"), so they are excluded here even should a future pycountry
list one.
"""

from __future__ import annotations

from string import ascii_uppercase

import pycountry

USER_ASSIGNED: frozenset[str] = frozenset(
    {"AA", "ZZ"}
    | {"Q" + letter for letter in ascii_uppercase if letter >= "M"}
    | {"X" + letter for letter in ascii_uppercase}
)

ASSIGNED: frozenset[str] = frozenset(
    code
    for code in (country.alpha_2 for country in pycountry.countries)
    # The shape check guards the lookup tables built from this set against a malformed entry.
    if len(code) == 2
    and code.isascii()
    and code.isalpha()
    and code.isupper()
    and code not in USER_ASSIGNED
)

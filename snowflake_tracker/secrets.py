"""The key ring behind non-enumerable numbers: secrets by key version, read from a file.

``--secret-file`` (``SNOWFLAKE_TRACKER_SECRET_FILE``) names a file of lines ``VERSION SECRET``::

    # Rotated 2025-06: numbers minted under version 1 still decode.
    1 <the secret of version 1>
    2 <the secret of version 2>

Versions run from 1 to 3 (the two key-version bits of a tracking number; 0 is the plain,
unkeyed ID). The secret is the second field, used as its UTF-8 bytes exactly as written: at
least 16 bytes, no whitespace inside, and random, since anyone can test a guessed secret
against a tracking number and the ID it decodes to. This makes a good one::

    python3 -c 'import secrets; print(secrets.token_urlsafe(32))'

Blank lines and lines starting with ``#`` are ignored. The highest version is the one new
numbers are minted under; the others stay to decode numbers already printed. A version's
secret never changes: rotate by adding a version with a new secret.

The file must be private to its owner, as an SSH key must: a secret others can read is no
secret. Every refusal names the file, the setting and the line, and never repeats a secret.
File reading lives here rather than in ``ids/``, which does no I/O.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from snowflake_tracker.ids.codec import MAX_KEY_VERSION
from snowflake_tracker.ids.permute import MIN_KEY_BYTES, FeistelPermutation

MIN_KEY_VERSION = 1
SETTING = "--secret-file, SNOWFLAKE_TRACKER_SECRET_FILE"
# Any bit in here means someone besides the owner can read or change the secrets.
SHARED_MODE_BITS = stat.S_IRWXG | stat.S_IRWXO
# A few versions of short lines; anything larger is the wrong file, not worth reading whole.
MAX_FILE_BYTES = 64 * 1024

# ``str.isdigit`` and ``int`` accept other scripts' digits; a version is ASCII.
_VERSION = re.compile(r"[0-9]+", re.ASCII)
_FORMAT = "'VERSION SECRET'"


class SecretFileError(ValueError):
    """A secret file the service refuses; the message says why and never shows a secret."""


def _refusal(problem: str, path: str | None) -> SecretFileError:
    """The error for ``problem``, a sentence naming the file and the setting."""
    subject = "Secret file" if path is None else f"Secret file {path!r}"
    return SecretFileError(f"{subject} ({SETTING}): {problem}.")


@dataclass(frozen=True, eq=False)
class KeyRing:
    """The permutation of each configured key version, and the version new numbers use.

    An empty ring (``KeyRing()``, version 0) mints plain, time-ordered numbers.
    """

    # repr=False: a permutation shows only a fingerprint, but the key ring's repr ends up in
    # logs and tracebacks, so it shows no key material at all.
    keys: Mapping[int, FeistelPermutation] = field(default_factory=dict, repr=False)
    current_version: int = 0
    _current: FeistelPermutation | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for version in self.keys:
            if not MIN_KEY_VERSION <= version <= MAX_KEY_VERSION:
                raise ValueError(
                    f"key version {version} is outside {MIN_KEY_VERSION}..{MAX_KEY_VERSION}"
                )
        if self.keys and self.current_version not in self.keys:
            raise ValueError(f"current key version {self.current_version} is not configured")
        if not self.keys and self.current_version != 0:
            raise ValueError("a key ring without keys has current version 0")
        # A read-only copy keeps the frozen ring frozen; the current permutation is looked up
        # once here rather than on every number minted.
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))
        object.__setattr__(self, "_current", self.keys.get(self.current_version))

    @property
    def versions(self) -> tuple[int, ...]:
        """The configured key versions, in order."""
        return tuple(sorted(self.keys))

    def fingerprint(self) -> str:
        """The fingerprint of the current version's secret; ``""`` when there is none."""
        return "" if self._current is None else self._current.fingerprint

    def encode(self, snowflake_id: int) -> tuple[int, int]:
        """The key version and the 63-bit value a tracking number carries for the ID."""
        current = self._current
        if current is None:
            return 0, snowflake_id
        return self.current_version, current.encrypt(snowflake_id)

    def decode(self, key_version: int, value: int) -> int:
        """The Snowflake ID behind ``value`` as minted under ``key_version``."""
        if key_version == 0:
            return value
        permutation = self.keys.get(key_version)
        if permutation is None:
            raise ValueError(f"key version {key_version} is not configured")
        return permutation.decrypt(value)


def parse_secret_text(text: str) -> KeyRing:
    """The key ring that the text of a secret file describes (see the module's docstring)."""
    return _parse(text, None)


def _parse(text: str, path: str | None) -> KeyRing:
    secrets: dict[int, bytes] = {}
    line_of_version: dict[int, int] = {}
    version_of_secret: dict[bytes, int] = {}
    # Split on newlines only, so line numbers match an editor's (``splitlines`` also breaks
    # at form feeds and Unicode separators).
    for number, line in enumerate(text.split("\n"), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        # Neither field is ever quoted back: a line this malformed may hold a secret anywhere.
        if len(fields) != 2:
            raise _refusal(
                f"line {number} is not of the form {_FORMAT}: it holds {len(fields)} "
                "whitespace-separated fields, not 2 (a secret contains no whitespace, and a "
                "comment takes a line of its own)",
                path,
            )
        version_text, secret_text = fields
        if not _VERSION.fullmatch(version_text):
            raise _refusal(
                f"line {number} does not start with a key version: the form is {_FORMAT}", path
            )
        version = int(version_text)
        if not MIN_KEY_VERSION <= version <= MAX_KEY_VERSION:
            raise _refusal(
                f"line {number} gives a key version outside {MIN_KEY_VERSION} to "
                f"{MAX_KEY_VERSION} (plain numbers, version 0, need no line)",
                path,
            )
        if version in line_of_version:
            raise _refusal(
                f"line {number} gives key version {version} again, after line "
                f"{line_of_version[version]}; a version's secret never changes",
                path,
            )
        secret = secret_text.encode()
        if len(secret) < MIN_KEY_BYTES:
            raise _refusal(
                f"the secret on line {number} is shorter than {MIN_KEY_BYTES} bytes; use a "
                "long random one",
                path,
            )
        if secret in version_of_secret:
            # A rotation to the same secret protects nothing the old version did not.
            raise _refusal(
                f"line {number} repeats the secret of key version "
                f"{version_of_secret[secret]}; each version needs its own",
                path,
            )
        secrets[version] = secret
        line_of_version[version] = number
        version_of_secret[secret] = version
    if not secrets:
        raise _refusal(
            f"it holds no {_FORMAT} line; add one, or unset the setting to mint plain numbers",
            path,
        )
    keys = {version: FeistelPermutation(secret) for version, secret in secrets.items()}
    return KeyRing(keys, max(keys))


def load_secret_file(path: str | os.PathLike[str]) -> KeyRing:
    """Read the key ring from a private secret file, or raise :class:`SecretFileError`."""
    name = os.fspath(path)
    # One descriptor for the checks and the read, so the file checked is the file read.
    # O_NONBLOCK: opening a FIFO by mistake must fail below, not hang start-up.
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise _refusal("it does not exist", name) from None
    except OSError as error:
        raise _refusal(f"it cannot be opened ({error.strerror})", name) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refusal("it is not a regular file", name)
        if mode & SHARED_MODE_BITS:
            raise _refusal(
                f"its mode {stat.S_IMODE(mode):04o} lets group or others read or write it; "
                "make it private to its owner (chmod 600)",
                name,
            )
        with open(fd, "rb", closefd=False) as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise _refusal(f"it cannot be read ({error.strerror})", name) from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise _refusal(f"it is larger than {MAX_FILE_BYTES // 1024} KiB", name)
    try:
        text = data.decode()
    except UnicodeDecodeError as error:
        bad_line = data.count(b"\n", 0, error.start) + 1
    else:
        return _parse(text.removeprefix("\N{BYTE ORDER MARK}"), name)
    # Raised outside the handler: the decoding error holds the file's bytes, and a chained
    # traceback would print them.
    raise _refusal(f"line {bad_line} is not UTF-8 text", name)


def load_keys(path: str | os.PathLike[str] | None) -> KeyRing:
    """The key ring of ``--secret-file``, or the empty ring (plain numbers) when unset."""
    return KeyRing() if path is None or str(path) == "" else load_secret_file(path)

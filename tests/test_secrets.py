"""The secret file: what it accepts, everything it refuses, and that no secret ever shows."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest

from snowflake_tracker.ids.layout import MAX_ID
from snowflake_tracker.ids.permute import FeistelPermutation, fingerprint
from snowflake_tracker.secrets import (
    MAX_FILE_BYTES,
    KeyRing,
    SecretFileError,
    load_keys,
    load_secret_file,
    parse_secret_text,
)

SECRET_1 = "s3cret-one-QHx2Lm9pT4vW"
SECRET_2 = "s3cret-two-Zk8Rb1nY6cJd"
SECRET_3 = "s3cret-three-Fw5Ua7eG0sPq"
SECRETS = (SECRET_1, SECRET_2, SECRET_3)
SETTING_NAMES = ("--secret-file", "SNOWFLAKE_TRACKER_SECRET_FILE")

GOOD_TEXT = f"""\
# Numbers minted before the rotation still decode under version 1.
1 {SECRET_1}

  # Indented comment, then a line with surrounding whitespace and a Windows line ending.
\t2   {SECRET_2}  \r
"""


def write_secret_file(tmp_path: Path, content: str | bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "secrets"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    path.chmod(mode)
    return path


def assert_shows_no_secret(error: BaseException, *secrets: str) -> None:
    """Neither the message nor the whole printed traceback, chained errors included, holds
    any of ``secrets`` (or any part of 8 characters or more)."""
    printed = "".join(traceback.format_exception(error))
    for secret in secrets:
        for start in range(len(secret) - 7):
            assert secret[start : start + 8] not in printed


def test_reads_versions_around_comments_and_blank_lines(tmp_path: Path) -> None:
    """Comments, blank lines, indentation and CRLF endings are ignored around the keys."""
    ring = load_secret_file(write_secret_file(tmp_path, GOOD_TEXT))
    assert ring.versions == (1, 2)
    assert ring.fingerprint() == fingerprint(SECRET_2.encode())


def test_the_highest_version_is_current() -> None:
    """New numbers use the highest version, whatever the order of the lines."""
    ring = parse_secret_text(f"3 {SECRET_3}\n1 {SECRET_1}\n")
    assert ring.current_version == 3
    version, _ = ring.encode(12345)
    assert version == 3


def test_secret_is_its_utf8_bytes_as_written() -> None:
    """A secret is taken as its UTF-8 bytes: its fingerprint is that of those bytes."""
    secret = "clé-de-chiffrement-ünïcode#1"
    ring = parse_secret_text(f"1 {secret}")
    assert ring.fingerprint() == fingerprint(secret.encode("utf-8"))


def test_length_is_counted_in_bytes() -> None:
    """Six three-byte characters make a long enough secret; seven two-byte ones do not."""
    assert parse_secret_text("1 " + "€" * 6).versions == (1,)
    with pytest.raises(SecretFileError, match="shorter than 16 bytes"):
        parse_secret_text("1 " + "é" * 7)


def test_encode_and_decode_round_trip_under_every_version() -> None:
    """An ID encoded under any configured version decodes back under that version."""
    text = f"1 {SECRET_1}\n2 {SECRET_2}\n3 {SECRET_3}\n"
    ring = parse_secret_text(text)
    for snowflake_id in (0, 1, 123_456_789_012, MAX_ID):
        version, value = ring.encode(snowflake_id)
        assert version == 3
        assert 0 <= value <= MAX_ID
        assert ring.decode(version, value) == snowflake_id
        for old_version, permutation in ring.keys.items():
            assert ring.decode(old_version, permutation.encrypt(snowflake_id)) == snowflake_id


def test_versions_permute_differently() -> None:
    """Each version's secret gives its own permutation."""
    ring = parse_secret_text(f"1 {SECRET_1}\n2 {SECRET_2}\n")
    one, two = ring.keys[1], ring.keys[2]
    assert all(one.encrypt(i) != two.encrypt(i) for i in range(1000))
    assert one.fingerprint != two.fingerprint


def test_plain_numbers_decode_under_any_ring() -> None:
    """Version 0 is the plain ID, with or without keys configured."""
    assert parse_secret_text(f"1 {SECRET_1}").decode(0, 42) == 42
    assert KeyRing().decode(0, 42) == 42


def test_unconfigured_version_does_not_decode() -> None:
    """A number minted under a version this ring lacks is refused, naming the version."""
    ring = parse_secret_text(f"1 {SECRET_1}")
    with pytest.raises(ValueError, match="key version 2 is not configured"):
        ring.decode(2, 42)


def test_empty_ring_mints_plain_numbers() -> None:
    """Without keys the ID passes through under version 0, with an empty fingerprint."""
    ring = KeyRing()
    assert ring.current_version == 0
    assert ring.encode(12345) == (0, 12345)
    assert ring.fingerprint() == ""


@pytest.mark.parametrize(
    ("keys", "current"),
    [
        ({4: FeistelPermutation(SECRET_1.encode())}, 4),
        ({1: FeistelPermutation(SECRET_1.encode())}, 2),
        ({}, 1),
    ],
)
def test_inconsistent_ring_is_refused(keys: dict[int, FeistelPermutation], current: int) -> None:
    """A ring with a version outside 1 to 3, or a current version it lacks, is refused."""
    with pytest.raises(ValueError, match="version"):
        KeyRing(keys, current)


def test_ring_cannot_be_changed() -> None:
    """The ring is frozen, down to its mapping of keys."""
    ring = parse_secret_text(f"1 {SECRET_1}")
    with pytest.raises(TypeError):
        ring.keys[2] = ring.keys[1]  # type: ignore[index]


def test_repr_shows_no_secret() -> None:
    """The repr and str of a ring, and of its keys, hold no secret."""
    ring = parse_secret_text(f"1 {SECRET_1}\n2 {SECRET_2}\n3 {SECRET_3}\n")
    for text in (repr(ring), str(ring), repr(ring.keys), repr(dict(ring.keys))):
        for secret in SECRETS:
            assert secret not in text
    assert repr(ring) == "KeyRing(current_version=3)"


# (text of the file, what the message must say). Every case hides SECRET_1 to SECRET_3
# somewhere, often where the parser meets it first.
REFUSED_TEXTS = {
    "lone secret": (f"1 {SECRET_1}\n{SECRET_2}\n", "line 2 is not of the form"),
    "three fields": (f"1 {SECRET_1} {SECRET_2}\n", "line 1 is not of the form"),
    "inline comment": (f"1 {SECRET_1}  # {SECRET_2}\n", "holds 4 whitespace-separated"),
    "secret first": (f"{SECRET_1} 1\n", "line 1 does not start with a key version"),
    "word version": (f"one {SECRET_1}\n", "line 1 does not start with a key version"),
    "other digits": (f"\N{ARABIC-INDIC DIGIT ONE} {SECRET_1}\n", "line 1 does not start"),
    "signed version": (f"+1 {SECRET_1}\n", "line 1 does not start with a key version"),
    "version 0": (f"0 {SECRET_1}\n", "line 1 gives a key version outside 1 to 3"),
    "version 4": (f"1 {SECRET_2}\n4 {SECRET_1}\n", "line 2 gives a key version outside 1 to 3"),
    "duplicate": (f"2 {SECRET_1}\n\n2 {SECRET_2}\n", "line 3 gives key version 2 again"),
    "reused secret": (f"1 {SECRET_1}\n2 {SECRET_1}\n", "line 2 repeats the secret of key ver"),
    "short secret": (f"1 {SECRET_1}\n3 {SECRET_2[:15]}\n", "secret on line 2 is shorter than 16"),
    "empty": ("", "holds no 'VERSION SECRET' line"),
    "only comments": (f"# 1 {SECRET_1}\n\n", "holds no 'VERSION SECRET' line"),
}


def assert_names_the_setting(error: SecretFileError) -> None:
    for name in SETTING_NAMES:
        assert name in str(error)


@pytest.mark.parametrize("case", REFUSED_TEXTS)
def test_refuses_bad_text_without_showing_secrets(case: str) -> None:
    """Every malformed text is refused with its line and the setting, and no secret in sight."""
    text, expected = REFUSED_TEXTS[case]
    with pytest.raises(SecretFileError) as caught:
        parse_secret_text(text)
    assert expected in str(caught.value)
    assert_names_the_setting(caught.value)
    assert_shows_no_secret(caught.value, *SECRETS)


@pytest.mark.parametrize("case", REFUSED_TEXTS)
def test_refuses_bad_files_naming_the_path(tmp_path: Path, case: str) -> None:
    """The same refusals from a file name the file as well."""
    text, expected = REFUSED_TEXTS[case]
    path = write_secret_file(tmp_path, text)
    with pytest.raises(SecretFileError) as caught:
        load_secret_file(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)
    assert_shows_no_secret(caught.value, *SECRETS)


def test_refuses_text_that_is_not_utf8(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are refused by line, without the bytes themselves."""
    content = f"1 {SECRET_1}\n2 {SECRET_2}\xff\n".encode("latin-1")
    with pytest.raises(SecretFileError, match="line 2 is not UTF-8") as caught:
        load_secret_file(write_secret_file(tmp_path, content))
    assert_shows_no_secret(caught.value, SECRET_1, SECRET_2)
    assert caught.value.__context__ is None


def test_ignores_a_byte_order_mark(tmp_path: Path) -> None:
    """A file saved with a UTF-8 byte order mark reads like one without."""
    path = write_secret_file(tmp_path, ("\N{BYTE ORDER MARK}" + GOOD_TEXT).encode())
    assert load_secret_file(path).versions == (1, 2)


@pytest.mark.parametrize("mode", [0o640, 0o620, 0o610, 0o604, 0o602, 0o601, 0o644, 0o666])
def test_refuses_a_file_others_can_use(tmp_path: Path, mode: int) -> None:
    """Any permission for group or others is refused, with the mode and the fix."""
    with pytest.raises(SecretFileError, match=f"mode {mode:04o}.*chmod 600") as caught:
        load_secret_file(write_secret_file(tmp_path, GOOD_TEXT, mode))
    assert_names_the_setting(caught.value)
    assert_shows_no_secret(caught.value, *SECRETS)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_accepts_a_private_file(tmp_path: Path, mode: int) -> None:
    """A file only its owner can read is accepted."""
    assert load_secret_file(write_secret_file(tmp_path, GOOD_TEXT, mode)).current_version == 2


def test_follows_a_symlink_to_a_private_file(tmp_path: Path) -> None:
    """A symlink (as Kubernetes mounts secrets) is judged by the file it points to."""
    target = write_secret_file(tmp_path, GOOD_TEXT)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert load_secret_file(link).versions == (1, 2)
    target.chmod(0o644)
    with pytest.raises(SecretFileError, match="mode 0644"):
        load_secret_file(link)


def test_refuses_a_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is refused, naming it and the setting."""
    path = tmp_path / "nowhere"
    with pytest.raises(SecretFileError, match="does not exist") as caught:
        load_secret_file(path)
    assert str(path) in str(caught.value)
    assert_names_the_setting(caught.value)


def test_refuses_a_directory(tmp_path: Path) -> None:
    """A directory is not a secret file."""
    with pytest.raises(SecretFileError, match="not a regular file"):
        load_secret_file(tmp_path)


def test_refuses_a_fifo_without_hanging(tmp_path: Path) -> None:
    """A named pipe is refused at once rather than waited on."""
    path = tmp_path / "pipe"
    os.mkfifo(path, 0o600)
    with pytest.raises(SecretFileError, match="not a regular file"):
        load_secret_file(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_refuses_an_unreadable_file(tmp_path: Path) -> None:
    """A file the service may not read is refused, naming the setting."""
    with pytest.raises(SecretFileError, match="cannot be opened") as caught:
        load_secret_file(write_secret_file(tmp_path, GOOD_TEXT, 0o000))
    assert_names_the_setting(caught.value)


def test_refuses_an_oversized_file(tmp_path: Path) -> None:
    """A file far larger than any key list is refused as the wrong file."""
    content = GOOD_TEXT + "#" * MAX_FILE_BYTES
    with pytest.raises(SecretFileError, match="larger than"):
        load_secret_file(write_secret_file(tmp_path, content))


def test_refuses_a_path_that_cannot_be_opened(tmp_path: Path) -> None:
    """A path the system cannot open is refused with the system's reason."""
    path = write_secret_file(tmp_path, GOOD_TEXT) / "child"
    with pytest.raises(SecretFileError, match=r"cannot be opened \(Not a directory\)") as caught:
        load_secret_file(path)
    assert_names_the_setting(caught.value)


def test_unset_setting_gives_plain_numbers(tmp_path: Path) -> None:
    """With the setting unset or empty the ring is empty; set, the file is loaded and checked."""
    assert load_keys(None).current_version == 0
    assert load_keys("").current_version == 0
    assert load_keys(write_secret_file(tmp_path, GOOD_TEXT)).current_version == 2
    with pytest.raises(SecretFileError, match="does not exist"):
        load_keys(tmp_path / "nowhere")

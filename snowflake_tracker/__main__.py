"""The command line: ``snowflake-tracker serve``, ``snowflake-tracker decode NUMBER``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

import orjson

from snowflake_tracker import __version__
from snowflake_tracker.config import ConfigError, add_arguments, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snowflake-tracker",
        description="Hands out unique parcel tracking numbers over HTTP.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="start a node: bind the port, run worker processes",
        description="Start a node. Every flag has an environment twin, shown in brackets.",
    )
    add_arguments(serve)
    decode = commands.add_parser(
        "decode",
        help="check a tracking number and show what it holds",
        description="Check a tracking number offline and print what it holds, as JSON.",
    )
    decode.add_argument("number", help="the tracking number (hyphens, spaces, lower case ok)")
    decode.add_argument(
        "--secret-file",
        default=None,
        help="key file, to decode numbers made under a key [SNOWFLAKE_TRACKER_SECRET_FILE]",
    )
    return parser


def decode_command(number: str, secret_file: str | None, env: Mapping[str, str]) -> int:
    """Print what a number holds, or why it is not a valid number (exit status 1)."""
    from snowflake_tracker.countries import ASSIGNED
    from snowflake_tracker.secrets import SecretFileError, load_keys
    from snowflake_tracker.web.handlers import describe

    path = secret_file or env.get("SNOWFLAKE_TRACKER_SECRET_FILE")
    try:
        keys = load_keys(path)
    except SecretFileError as exc:
        print(f"snowflake-tracker: {exc}", file=sys.stderr)
        return 2
    try:
        answer = describe(number, ASSIGNED, keys.decode if keys.current_version else None)
    except ValueError as exc:
        print(f"not a valid tracking number: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    environ = os.environ if env is None else env
    if args.command == "decode":
        return decode_command(args.number, args.secret_file, environ)
    try:
        config = load_config(vars(args), environ)
    except ConfigError as exc:
        print(f"snowflake-tracker: {exc}", file=sys.stderr)
        return 2
    from snowflake_tracker.supervisor import serve

    return serve(config, environ)


def console_main() -> None:
    """Entry point of the ``snowflake-tracker`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()

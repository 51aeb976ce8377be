"""The command line's encryption keys (SPEC.md §3.5): `--key-file` (32 raw bytes or 64 hex digits, as
`tmodel keygen --algorithm aes-256-gcm` writes), `--passphrase-env VAR` or `--passphrase-file FILE` (its
first line). A passphrase is never an argument itself: arguments are visible to every user of the machine."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..archive.encryption import read_key_file
from ..errors import InvalidArgument


def add_key_options(p: argparse.ArgumentParser, what: str = "opens an encrypted FILE") -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--key-file", metavar="FILE", help=f"a raw 32-byte key file (binary or hex) that {what}")
    g.add_argument(
        "--passphrase-env", metavar="VAR", help=f"the environment variable whose passphrase {what}"
    )
    g.add_argument(
        "--passphrase-file", metavar="FILE", help=f"a file whose first line is the passphrase that {what}"
    )


def key_of(args: argparse.Namespace) -> Any:
    """The key the options give, or None."""
    if args.key_file:
        return read_key_file(args.key_file)
    if args.passphrase_env:
        value = os.environ.get(args.passphrase_env)
        if not value:
            raise InvalidArgument(f"the environment variable {args.passphrase_env} is unset or empty")
        return value
    if args.passphrase_file:
        try:
            with open(args.passphrase_file, encoding="utf-8") as f:
                line = f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"cannot read passphrase file {args.passphrase_file!r}: {exc}") from None
        if not line:
            raise InvalidArgument(f"passphrase file {args.passphrase_file!r} has an empty first line")
        return line
    return None

"""``prismrec`` command line. Each command group lives in its own module with ``register(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from .. import __version__

#: modules that add sub-commands; a missing optional module is skipped
COMMAND_MODULES = ("prismrec.cli.run", "prismrec.cli.data", "prismrec.cli.features", "prismrec.cli.inspect")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prismrec",
        description="Multimodal sequential recommendation with PRISM. Run `prismrec train` with no "
                    "arguments to train SASRec on the embedded SYNTHETIC demo world and print its metrics.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"prismrec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings on the command line: one ``warning: ...`` line, without Python's source excerpt."""
    return f"warning: {message}\n"


def _describe_os_error(exc: OSError) -> str:
    """``FILE: reason`` for an OS-level failure, without Python's ``[Errno N]`` prefix."""
    if exc.strerror is None:  # raised with a message of our own
        return str(exc)
    files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    return f"{files}: {exc.strerror}" if files else exc.strerror


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for commands that record how they were called
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
    from ..config import ConfigError
    from ..data.sequences import DataError

    try:
        with warnings.catch_warnings():  # restores the default display when main() returns
            warnings.formatwarning = _format_warning
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # here, so that a closed pipe is met below, not in the interpreter's exit
            return code
    except BrokenPipeError:
        # stdout's reader went away (e.g. `prismrec config | head -1`): stop quietly. stdout now points at
        # devnull, so that the interpreter's last flush does not fail again; the status is 141 (128 + SIGPIPE),
        # what a shell reports for a Unix tool ended by a closed pipe, so `set -o pipefail` treats both alike
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a file descriptor (e.g. captured in tests)
            pass
        return 141
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be read or written (missing, permissions, a folder, disk full)
        print(f"error: {_describe_os_error(exc)}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:  # a text input that is not UTF-8 (readers that name the file raise DataError)
        print(f"error: a text input is not valid UTF-8: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:  # training diverged (the trainer's message says what to try)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

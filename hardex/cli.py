"""`hardex` command line: each subcommand lives in the module that owns it.

A module that adds a subcommand exposes ``add_cli(subparsers)``, which registers a parser
and sets ``func`` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import signal
import sys

from hardex.runs.errors import RunsFailed

# Modules that contribute subcommands, in the order `hardex --help` lists them.
_COMMAND_MODULES = ["hardex.book.build", "hardex.runs.cli", "hardex.evaluation.cli", "hardex.runs.progress", "hardex.tools.bench", "hardex.tools.gpucheck",
                    "hardex.book.render"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hardex", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # that part of the library has not landed yet
                continue
            raise
        module.add_cli(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by bad input (a spec, a parameter file, missing data): one line, exit 2."""
    errors: list[type[BaseException]] = []
    for module, name in (("hardex.runs.spec", "SpecError"), ("hardex.book.build", "ParamsError"),
                         ("hardex.data", "DataNotFoundError"), ("pydantic", "ValidationError")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that training stops the way Ctrl-C stops it."""


def _on_sigterm(signum, frame):
    raise Terminated("SIGTERM")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as given (records name the command that made them)
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RunsFailed as err:  # each failed run named with its job and log; the others finished
        print(f"error: {err}", file=sys.stderr)
        print(f"the finished runs are kept; after fixing the cause: hardex {' '.join(shlex.quote(a) for a in argv)}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        # the store writes atomically: the last checkpoint is intact and training resumes from it
        print(f"\ninterrupted; resume with: hardex {' '.join(shlex.quote(a) for a in argv)}", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, old)


if __name__ == "__main__":
    sys.exit(main())

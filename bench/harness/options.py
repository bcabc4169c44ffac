"""Command-line pieces the three benchmark scripts share."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .output import DEFAULT_OUTPUT
from .variants import listing, unknown_variants


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where there is none to show (flags, options whose help gives it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help or ""
        if isinstance(action, argparse._StoreFalseAction):
            return action.help or ""
        return super()._get_help_string(action) or ""


class _ListVariants(argparse.Action):
    """Prints the variants and exits, before any other option is checked (like ``--help``)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(listing())
        parser.exit()


def add_list_variants(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list-variants", action=_ListVariants, help="describe the variants and exit")


def add_output_options(parser: argparse.ArgumentParser, script: str) -> None:
    """``--output`` and ``--no-write``: where the script's section goes."""
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"Markdown file; its section between the {script} markers is replaced",
    )
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing --output")


def add_core_options(parser: argparse.ArgumentParser, client_help: str = "core wrk is pinned to") -> None:
    """``--server-core`` and ``--client-core``: where gunicorn and the load generator run."""
    parser.add_argument("--server-core", type=int, default=0, help="core gunicorn is pinned to")
    parser.add_argument("--client-core", type=int, default=1, help=client_help)


def comma_list(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated option."""
    return [item.strip() for item in text.split(",") if item.strip()]


def check_variants(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """Exit with a usage error at the first name that is no variant."""
    for name in unknown_variants(names):
        parser.error(f"unknown variant {name!r}; see --list-variants")

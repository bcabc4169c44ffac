#!/usr/bin/env python
"""Django's command-line utility for the HCV diagnosis example service."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hcv_service.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Is the virtual environment with the project's dependencies active?"
        ) from exc
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

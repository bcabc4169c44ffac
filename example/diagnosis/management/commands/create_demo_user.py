"""Create a demo user with an API token, or reuse the existing one, and print the token.

    TOKEN=$(python manage.py create_demo_user)
    curl -H "Authorization: Token $TOKEN" ...

Running it again changes nothing and prints the same token, so scripts can call it every time.
"""

import json
import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create (or reuse) a demo user and its DRF API token; print the token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo", help="Default: demo.")
        parser.add_argument(
            "--password",
            default=os.environ.get("HCV_DEMO_PASSWORD"),
            help=(
                "Set this password, e.g. for session login (default: $HCV_DEMO_PASSWORD). "
                "Without one, a new user gets no usable password and can only use the token."
            ),
        )
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help='Print {"username", "user_id", "token", "created"} as JSON instead of the token.',
        )

    def handle(self, *args: Any, username: str, password: str | None, as_json: bool, **options: Any) -> None:
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(username=username)
            if password:
                user.set_password(password)
                user.save(update_fields=["password"])
            elif created:
                user.set_unusable_password()
                user.save(update_fields=["password"])
            token, _ = Token.objects.get_or_create(user=user)

        if created:
            self.stderr.write(f"Created user {username!r}.")
        # Only the token (or the JSON) goes to stdout, so that scripts can capture it.
        if as_json:
            summary = {"username": username, "user_id": user.pk, "token": token.key, "created": created}
            self.stdout.write(json.dumps(summary))
        else:
            self.stdout.write(token.key)

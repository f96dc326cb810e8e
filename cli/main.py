"""``pennyworth``: manage keys, teams and people, and read usage of a pennyworth gateway.

The root group holds the global options (which gateway, which profile) and
turns every ``cli.errors.CliError`` into a ``click.ClickException`` (exit 1;
usage errors exit 2). Command groups live in their own modules and are
registered at the bottom: add a group there without touching the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click

from cli.config import Profile, resolve_profile
from cli.errors import CliError
from cli.output import safe


@dataclass
class State:
    """Global options, and the profile and client built from them on first use."""

    local: bool = False
    profile_name: str | None = None
    endpoint: str | None = None
    _profile: Profile | None = field(default=None, repr=False)
    _client: Any = field(default=None, repr=False)

    def profile(self) -> Profile:
        if self._profile is None:
            self._profile = resolve_profile(local=self.local, name=self.profile_name, endpoint=self.endpoint)
        return self._profile

    def client(self) -> Any:
        """The admin API client for this profile (``cli.client.GatewayClient``)."""
        if self._client is None:
            from cli.client import GatewayClient

            self._client = GatewayClient(self.profile())
        return self._client


class PennyworthGroup(click.Group):
    """The root group: the one place where CLI errors become click errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            # Messages quote the gateway, which may quote what someone typed: never raw to a terminal.
            raise click.ClickException("\n".join(safe(line) for line in str(exc).split("\n"))) from None


@click.group(cls=PennyworthGroup)
@click.version_option(package_name="pennyworth")
@click.option("--local", is_flag=True, help="Use the 'make dev' stack (.pennyworth/dev.json, found upwards from here).")
@click.option(
    "--profile", "profile_name", metavar="NAME", help="Profile from the config file [env: PENNYWORTH_PROFILE]."
)
@click.option("--endpoint", metavar="URL", help="Gateway URL, overriding the profile's [env: PENNYWORTH_ENDPOINT].")
@click.pass_context
def cli(ctx: click.Context, local: bool, profile_name: str | None, endpoint: str | None) -> None:
    """Manage API keys, models and usage of a pennyworth gateway."""
    if local and profile_name:
        raise click.UsageError("Use either --local or --profile, not both.")
    ctx.obj = State(local=local, profile_name=profile_name, endpoint=endpoint)


def _register() -> None:
    from cli.auth import login, logout
    from cli.keys import keys
    from cli.models import models
    from cli.requests import requests
    from cli.teams import teams
    from cli.usage import budget, ledger, report, usage
    from cli.users import users

    for command in (login, logout, keys, models, teams, users, usage, requests, budget, report, ledger):
        cli.add_command(command)


_register()

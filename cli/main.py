"""``pennyworth``: manage keys and read usage of a pennyworth gateway."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="pennyworth")
def cli() -> None:
    """Manage API keys and usage of a pennyworth gateway."""

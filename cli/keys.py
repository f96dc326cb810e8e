"""``pennyworth keys …``: create, list, show, update, revoke, rotate, audit, import, export."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli import csvfile, output
from cli.errors import CliError

IMPORT_BATCH = 200  # rows per request: keeps each call far below the gateway's 1,000 and 29 s limits
EXPORT_COLUMNS = (
    "id",
    "owner",
    "name",
    "allowed_models",
    "monthly_budget_usd",
    "rpm_limit",
    "tpm_limit",
    "expires_at",
    "metadata",
    "key_id",
    "prefix",
    "status",
    "created_at",
    "updated_at",
    "revoked_at",
    "last_used_at",
)
_DURATION = re.compile(r"^([0-9]+)([smhd]?)$")  # ASCII: int("²") raises
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
NONE_WORDS = ("none", "null", "never", "unlimited")


@click.group()
def keys() -> None:
    """Manage API keys (admins: every key; everyone else: their own)."""


# Options shared by create and update.


def _key_options(command: Any) -> Any:
    options = [
        click.option("--name", help="A label for humans."),
        click.option(
            "--model", "models", multiple=True, metavar="MODEL", help="Allow only this model (repeat for more)."
        ),
        click.option("--budget", metavar="USD", help='Monthly budget in USD, e.g. "25.00" ("none": no budget).'),
        click.option("--rpm", metavar="N", help='Requests per minute ("none": no limit).'),
        click.option("--tpm", metavar="N", help='Tokens per minute ("none": no limit).'),
        click.option("--expires", metavar="TIME", help='Expiry, ISO 8601 (e.g. 2027-01-31T00:00:00Z; "never").'),
        click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE", help="Metadata entry (repeatable)."),
        click.option(
            "--guardrail",
            metavar="ID[:VERSION]",
            help='Bedrock guardrail every call carries, e.g. "abc123:1" (version DRAFT if left out; "none": clear).',
        ),
        click.option(
            "--fallback",
            type=click.Choice(["any", "same_model", "none"]),
            help="Which fallbacks may serve: any (default), same_model (another geography or region only), none.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _fields(
    name: str | None, models: tuple[str, ...], budget: str | None, rpm: str | None, tpm: str | None,
    expires: str | None, meta: tuple[str, ...], guardrail: str | None = None, fallback: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The JSON body fields for the options given (budget stays a string: exact money)."""
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if models:
        body["allowed_models"] = list(models)
    if budget is not None:
        body["monthly_budget_usd"] = None if budget.lower() in NONE_WORDS else budget
    for field, value in (("rpm_limit", rpm), ("tpm_limit", tpm)):
        if value is not None:
            body[field] = None if value.lower() in NONE_WORDS else _int_or_text(value)
    if expires is not None:
        body["expires_at"] = None if expires.lower() in NONE_WORDS else expires
    if meta:
        body["metadata"] = dict(_pair(item) for item in meta)
    if guardrail is not None:
        body["guardrail"] = None if guardrail.lower() in NONE_WORDS else guardrail_body(guardrail)
    if fallback is not None:
        body["model_fallback"] = fallback
    return body


def guardrail_body(value: str) -> dict[str, str]:
    # An ARN holds colons: the version is what follows the last one, when it is DRAFT or a number.
    identifier, sep, version = value.rpartition(":")
    if sep and (version == "DRAFT" or version.isdigit()):
        return {"id": identifier, "version": version}
    return {"id": value, "version": "DRAFT"}


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--meta")
    return key, value


def _int_or_text(value: str) -> int | str:
    # Non-numbers go to the gateway as they are, so its 400 names the field.
    return int(value) if re.fullmatch(r"[0-9]+", value.strip()) else value


@keys.command()
@click.option("--owner", help="Email or sub of the owner (admins only; default: you).")
@click.option("--team", metavar="TEAM", help="Charge the key to this team (id or name) of its owner as well.")
@click.option("--team-key", is_flag=True, help="The team's own key, owned by --team (team admins and admins).")
@_key_options
@output.json_option
@click.pass_obj
def create(state: Any, owner: str | None, team: str | None, team_key: bool, json_: bool, **options: Any) -> None:
    """Create a key (--name is required); its secret is shown once, now."""
    if not (options["name"] or "").strip():
        # As in the console: a key nobody can tell from the next is one nobody dares revoke.
        raise click.UsageError('A key needs a name: --name TEXT, what it is for (e.g. "laptop"); admins see it.')
    if team_key and not team:
        raise click.UsageError("--team-key needs --team: the team that owns the key.")
    body = _fields(**options)
    if owner:
        body["owner"] = owner
    if team:
        body["team"] = team
    if team_key:
        body["team_owned"] = True
    key = state.client().post("/admin/keys", body)
    if json_:
        output.emit_json(key)
        return
    output.print_table(_key_panel(key))
    click.echo(key["secret"])  # alone on the last stdout line: `| tail -1` captures it
    output.notice("[bold]Store this key now: it will not be shown again.[/bold]")


@keys.command(name="list")
@click.option("--owner", help='Only this owner\'s keys (email, sub, or "me").')
@click.option("--team", metavar="TEAM", help="Only the keys charged to this team (its admins and admins).")
@click.option(
    "--status", type=click.Choice(["active", "expired", "revoked", "disabled"]), help="Only keys in this state."
)
@click.option("--limit", type=click.IntRange(1, 100), default=50, show_default=True, help="Keys per page.")
@click.option("--all", "all_pages", is_flag=True, help="Follow every page (default: the first page).")
@output.json_option
@click.pass_obj
def list_keys(
    state: Any, owner: str | None, team: str | None, status: str | None, limit: int, all_pages: bool, json_: bool
) -> None:
    """List keys, newest first."""
    params = {"owner": owner, "team": team, "status": status, "limit": limit}
    pages = state.client().pages("/admin/keys", params)
    data: list[dict[str, Any]] = []
    cursor = None
    for page in pages:
        data.extend(page["data"])
        cursor = page.get("next_cursor")
        if not all_pages:
            break
    result = {"object": "list", "data": data, "next_cursor": None if all_pages else cursor}
    output.show(result, json_, lambda r: _keys_table(r["data"]))
    if not json_ and cursor and not all_pages:
        output.notice("More keys exist: add --all to list every page.")


@keys.command()
@click.argument("key_id")
@output.json_option
@click.pass_obj
def show(state: Any, key_id: str, json_: bool) -> None:
    """Show one key (never its secret)."""
    output.show(state.client().get(f"/admin/keys/{key_id}"), json_, _key_panel)


@keys.command()
@click.argument("key_id")
@_key_options
@click.option("--all-models", is_flag=True, help="Remove the model allowlist (every model).")
@click.option("--clear-metadata", is_flag=True, help="Remove every metadata entry.")
@click.option("--team", metavar="TEAM", help='Charge the key to this team of its owner ("none": to its owner alone).')
@output.json_option
@click.pass_obj
def update(
    state: Any, key_id: str, all_models: bool, clear_metadata: bool, team: str | None, json_: bool, **options: Any
) -> None:
    """Change a key's name, models, budget, limits, expiry, metadata, team, guardrail or fallback policy."""
    body = _fields(**options)
    if team is not None:
        body["team"] = None if team.lower() in NONE_WORDS else team
    if all_models:
        if "allowed_models" in body:
            raise click.UsageError("Use either --model or --all-models, not both.")
        body["allowed_models"] = None
    if clear_metadata:
        if "metadata" in body:
            raise click.UsageError("Use either --meta or --clear-metadata, not both.")
        body["metadata"] = None
    if not body:
        raise click.UsageError("Nothing to change: give at least one option (see --help).")
    output.show(state.client().patch(f"/admin/keys/{key_id}", body), json_, _key_panel)


@keys.command()
@click.argument("key_id")
@click.option("--reason", help="Why (kept in the audit log).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@output.json_option
@click.pass_obj
def revoke(state: Any, key_id: str, reason: str | None, yes: bool, json_: bool) -> None:
    """Revoke a key: refused from the very next request on. Cannot be undone."""
    if not yes:
        click.confirm(f"Revoke {key_id}? Requests with it will fail from now on", abort=True, err=True)
    key = state.client().post(f"/admin/keys/{key_id}/revoke", {"reason": reason} if reason else None)
    output.show(key, json_, _key_panel)
    if not json_:
        output.notice(f"Revoked {output.markup(key['prefix'])}.")


@keys.command()
@click.argument("key_id")
@click.option(
    "--grace",
    default="0",
    show_default=True,
    metavar="DURATION",
    callback=lambda ctx, param, value: parse_duration(value),
    help="How long the old secret keeps working: 3600, 90s, 15m, 2h, 1d (max 7d).",
)
@output.json_option
@click.pass_obj
def rotate(state: Any, key_id: str, grace: int, json_: bool) -> None:
    """Give a key a new secret (shown once); the old one stops after the grace period."""
    key = state.client().post(f"/admin/keys/{key_id}/rotate", {"grace_seconds": grace})
    if json_:
        output.emit_json(key)
        return
    output.print_table(_key_panel(key))
    click.echo(key["secret"])  # alone on the last stdout line: `| tail -1` captures it
    until = key.get("previous_secret_valid_until")
    output.notice(
        f"The old secret works until {output.markup(until)}." if until else "The old secret stopped working now."
    )
    output.notice("[bold]Store the new key now: it will not be shown again.[/bold]")


def parse_duration(text: str) -> int:
    """Seconds in ``3600``, ``90s``, ``15m``, ``2h`` or ``1d``."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration such as 3600, 90s, 15m, 2h or 1d.", param_hint="--grace")
    return int(match.group(1)) * _UNITS[match.group(2)]


@keys.command()
@click.argument("key_id", required=False)
@click.option(
    "--day", metavar="YYYY-MM-DD", help="Without KEY_ID: every key's events of this UTC day (default: today)."
)
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True, help="Events per page.")
@output.json_option
@click.pass_obj
def audit(state: Any, key_id: str | None, day: str | None, limit: int, json_: bool) -> None:
    """Show the audit log of one key, or of every key for a day (admins)."""
    if key_id and day:
        raise click.UsageError("--day applies only without KEY_ID.")
    path = f"/admin/keys/{key_id}/audit" if key_id else "/admin/audit"
    events = [e for page in state.client().pages(path, {"limit": limit, "day": day}) for e in page["data"]]
    output.show({"object": "list", "data": events}, json_, lambda r: _audit_table(r["data"]))


# Bulk import and export


@keys.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), help="File format (default: from the extension).")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=IMPORT_BATCH, show_default=True,
              help="Rows per request.")  # fmt: skip
@click.option("--secrets-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the new keys' secrets to this new CSV file (mode 0600; never an existing one) "
                   "instead of printing them.")  # fmt: skip
@output.json_option
@click.pass_obj
def import_keys(
    state: Any, file: Path, fmt: str | None, batch_size: int, secrets_out: Path | None, json_: bool
) -> None:
    """Create keys from a CSV or JSON file; re-importing the same ids changes nothing.

    Each row needs an "id" (your unique name for the key). Rows that fail are
    reported one by one; the others are imported anyway.
    """
    rows = read_rows(file, fmt or _format_of(file))
    if not rows:
        raise CliError(f"{file} has no rows to import.")
    # The secrets file is created (exclusively: an existing file is never truncated) before any key
    # is, and each batch's secrets reach the disk before the next batch is sent.
    secrets = SecretsFile.create(secrets_out) if secrets_out is not None else None
    client = state.client()
    # Repeated ids are found here, across the whole file and numbered by its rows (the gateway sees
    # one batch at a time, and would number a repeat by its position in the request).
    results, to_send = duplicate_rows(rows)
    try:
        with _progress() as progress:
            task = progress.add_task("Importing", total=len(to_send))
            for start in range(0, len(to_send), batch_size):
                batch = to_send[start : start + batch_size]
                answer = client.post("/admin/keys/import", {"keys": [row for _, row in batch]})
                batch_results = [{**result, "row": batch[result["row"]][0]} for result in answer["results"]]
                if secrets is not None:
                    secrets.write(batch_results)
                results.extend(batch_results)
                progress.advance(task, len(batch))
    except CliError as exc:
        created = sum(1 for r in results if r["status"] == "created")
        if not created:
            raise
        # Keys were created before the failure: their secrets exist nowhere else, so show them now.
        report = _import_report(results)
        if secrets is None:
            (output.emit_json if json_ else lambda r: _print_import(r, None))(report)
        where = f"in {secrets_out}" if secrets_out else "above"
        raise CliError(
            f"{created} keys were created before the import stopped; their secrets are {where}. ({exc.message})",
            "Import the same file again (into a new --secrets-out file): created rows are skipped as 'exists'.",
        ) from None
    finally:
        if secrets is not None:
            secrets.close()
    report = _import_report(results)
    if json_:
        output.emit_json(report)
    else:
        _print_import(report, secrets_out)
    if report["error"]:
        raise CliError(f"{report['error']} of {len(rows)} rows were not imported (see the report above).")


def duplicate_rows(rows: list[tuple[int, Any]]) -> tuple[list[dict[str, Any]], list[tuple[int, Any]]]:
    """Error results for rows repeating an earlier row's (owner, id), and the rows left to send."""
    first: dict[tuple[str, str], int] = {}
    errors: list[dict[str, Any]] = []
    unique: list[tuple[int, Any]] = []
    for number, row in rows:
        row_id = row.get("id") if isinstance(row, dict) else None
        if not isinstance(row_id, str) or not row_id.strip():
            unique.append((number, row))  # the gateway explains what is wrong with it
            continue
        marker = (str(row.get("owner") or "").strip().lower(), row_id.strip())
        if marker in first:
            message = f"Duplicate id {row_id.strip()!r} (also in row {first[marker]})."
            error = {"message": message, "type": "invalid_request_error", "param": "id", "code": "duplicate_id"}
            errors.append({"row": number, "id": row_id, "status": "error", "error": error})
        else:
            first[marker] = number
            unique.append((number, row))
    return errors, unique


def _import_report(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "import_result",
        **{status: sum(1 for r in results if r["status"] == status) for status in ("created", "exists", "error")},
        "results": sorted(results, key=lambda r: r["row"]),
    }


@keys.command(name="export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--output", "-o", "out", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
@click.option("--owner", help='Only this owner\'s keys (email, sub, or "me").')
@click.option("--status", type=click.Choice(["active", "expired", "revoked"]), help="Only keys in this state.")
@click.option("--force", is_flag=True, help="Overwrite the --output file if it exists.")
@output.json_option
@click.pass_obj
def export_keys(
    state: Any, fmt: str, out: Path | None, owner: str | None, status: str | None, force: bool, json_: bool
) -> None:
    """Write keys as import rows (no secrets): CSV or JSON, to a file or stdout.

    With --json, the rows go to stdout as JSON (or, with --output, the file
    gets the rows and stdout a JSON summary).
    """
    if out is not None and out.exists() and not force:
        raise CliError(f"{out} already exists.", "Add --force to overwrite it, or choose another file.")
    rows: list[dict[str, Any]] = []
    with _progress() as progress:
        task = progress.add_task("Exporting", total=None)
        for page in state.client().pages("/admin/keys/export", {"owner": owner, "status": status, "limit": 1000}):
            rows.extend(page["data"])
            progress.update(task, completed=len(rows))
    text = json.dumps(rows, indent=2) + "\n" if fmt == "json" or (json_ and out is None) else rows_to_csv(rows)
    if out is None:
        output.echo_text(text)
        return
    out.write_text(text)
    if json_:
        output.emit_json({"exported": len(rows), "file": str(out), "format": fmt})
    else:
        output.notice(f"Exported {len(rows)} keys to {output.markup(out)}.")


def read_rows(path: Path, fmt: str) -> list[tuple[int, dict[str, Any]]]:
    """``(row number in the file, row)`` pairs: CSV data rows count from 2 (line 1 is the header)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"Cannot read {path}: {exc}") from None
    if fmt == "json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CliError(f"{path} is not valid JSON: {exc}") from None
        except RecursionError:
            raise CliError(f"{path} is not usable JSON: it is nested too deeply.") from None
        if isinstance(data, dict) and isinstance(data.get("keys"), list):
            data = data["keys"]
        if not isinstance(data, list):
            raise CliError(f'{path} must hold a JSON list of key objects (or {{"keys": [...]}}).')
        return [(index + 1, row) for index, row in enumerate(data)]
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "id" not in reader.fieldnames:
        raise CliError(f"{path} needs a header row with at least an 'id' column.")
    return [(index + 2, _from_csv(row)) for index, row in enumerate(reader)]


def _from_csv(row: dict[str | None, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in row.items():
        if name is None or value is None or value.strip() == "":
            continue  # extra cells and empty cells: the field is simply absent
        value = csvfile.read_cell(value.strip())
        if name == "allowed_models":
            result[name] = [m.strip() for m in re.split(r"[;,]", value) if m.strip()]
        elif name in ("rpm_limit", "tpm_limit"):
            result[name] = _int_or_text(value)
        elif name == "metadata":
            try:
                result[name] = json.loads(value)
            except ValueError:
                result[name] = value  # the gateway reports it, naming the field
        else:
            result[name] = value
    return result


def rows_to_csv(rows: Iterable[dict[str, Any]]) -> str:
    """Export rows as CSV in the format ``read_rows`` reads back."""

    def cells(row: dict[str, Any]) -> dict[str, Any]:
        cells = dict(row)
        if cells.get("allowed_models") is not None:
            cells["allowed_models"] = ";".join(cells["allowed_models"])
        cells["metadata"] = json.dumps(cells["metadata"]) if cells.get("metadata") else ""
        return cells

    return csvfile.rows_text(EXPORT_COLUMNS, (cells(row) for row in rows))


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".json"):
        return suffix[1:]
    raise click.UsageError(f"Cannot tell the format of {path.name}: use --format csv or --format json.")


class SecretsFile:
    """The ``--secrets-out`` CSV: a new file (mode 0600), one flushed batch of secrets at a time."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._writer = csvfile.Writer(handle)

    @classmethod
    def create(cls, path: Path) -> SecretsFile:
        """Create ``path``; refuse if anything is there already (secrets are never overwritten).

        Raises
        ------
        CliError
            ``path`` exists, or cannot be created.
        """
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CliError(
                f"{path} already exists; it may hold the secrets of an earlier import, so it is left alone.",
                "Choose a new file for --secrets-out.",
            ) from None
        except OSError as exc:
            raise CliError(f"Cannot create {path}: {exc.strerror}.") from None
        secrets = cls(os.fdopen(fd, "w", newline=""))
        secrets._writer.row(["id", "key_id", "secret"])
        return secrets

    def write(self, results: list[dict[str, Any]]) -> None:
        for result in results:
            if result.get("secret"):
                self._writer.row([result["id"], result["key"]["key_id"], result["secret"]])
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=output.stderr(),
        transient=True,
    )


# Rendering


def _key_panel(key: dict[str, Any]) -> output.TableData:
    rows = [
        ("key id", key["key_id"]),
        ("prefix", key["prefix"]),
        ("name", key["name"] or None),
        ("status", key["status"]),
        ("owner", owner_label(key)),
        ("team", key.get("team")),
        ("models", key["allowed_models"] or "all"),
        ("budget (USD/month)", key["monthly_budget_usd"]),
        ("rpm / tpm", f"{key['rpm_limit'] or '-'} / {key['tpm_limit'] or '-'}"),
        ("expires", key["expires_at"]),
        ("created", key["created_at"]),
        ("updated", key["updated_at"]),
        ("revoked", key["revoked_at"]),
        ("old secret valid until", key.get("previous_secret_valid_until")),
        ("metadata", key["metadata"] or None),
        ("guardrail", guardrail_text(key.get("guardrail"))),
        ("fallback", key.get("model_fallback")),
        ("limits set by an admin", sorted(key.get("admin_limits") or {}) or None),
    ]
    return output.table(key["prefix"], ["field", "value"], rows, panel=True)


def guardrail_text(guardrail: dict[str, Any] | None) -> str | None:
    return f"{guardrail['id']} (version {guardrail['version']})" if guardrail else None


def _keys_table(data: list[dict[str, Any]]) -> Any:
    return output.table(
        f"{len(data)} keys",
        ["key id", "name", "owner", "status", "models", "budget", "rpm", "tpm", "expires"],
        [
            (
                k["key_id"],
                k["name"] or None,
                owner_label(k),
                k["status"],
                k["allowed_models"] or "all",
                k["monthly_budget_usd"],
                k["rpm_limit"],
                k["tpm_limit"],
                k["expires_at"],
            )
            for k in data
        ],
    )


def owner_label(key: dict[str, Any]) -> str:
    """Who a key belongs to, as people read it: an e-mail, or its team for a team's own key."""
    if key.get("team_owned"):
        return f"team {key.get('team')}"
    return key["owner"]["email"] or key["owner"]["sub"]


def audit_table(events: list[dict[str, Any]]) -> Any:
    """Audit events of any subject (a key's, a team's, a person's) as a table."""
    return _audit_table(events)


def _audit_table(events: list[dict[str, Any]]) -> Any:
    def changes(event: dict[str, Any]) -> str:
        parts = [
            f"{name}={c.get('to')}" if c.get("from") is None else f"{name}: {c.get('from')} → {c.get('to')}"
            for name, c in event["changes"].items()
        ]
        parts += [f"{name}={value}" for name, value in event["details"].items() if value is not None]
        return "; ".join(parts)

    def actor(event: dict[str, Any]) -> str:
        who = event["actor"]
        return "(the key itself)" if who["kind"] == "api_key" else (who["email"] or who["sub"] or "?")

    def subject(event: dict[str, Any]) -> str:
        about = event.get("subject") or {"kind": "key", "id": event.get("key_id")}
        return about["id"] if about["kind"] == "key" else f"{about['kind']} {about['id']}"

    def actor_of(event: dict[str, Any]) -> str:
        return "(the sweep)" if event["actor"]["kind"] == "system" else actor(event)

    return output.table(
        f"{len(events)} events",
        ["time (UTC)", "subject", "action", "actor", "what changed"],
        [(e["at"], subject(e), e["action"], actor_of(e), changes(e) or None) for e in events],
    )


def _print_import(report: dict[str, Any], secrets_out: Path | None) -> None:
    created = [r for r in report["results"] if r["status"] == "created"]
    errors = [r for r in report["results"] if r["status"] == "error"]
    if created and secrets_out is None:
        output.print_table(
            output.table(
                "New keys (secrets are shown once)",
                ["row", "id", "key id", "secret"],
                [(r["row"], r["id"], r["key"]["key_id"], r["secret"]) for r in created],
            )
        )
    if errors:
        # Piped, stdout holds only the new keys (one TSV table); the refused rows go to stderr.
        output.print_table(
            output.table(
                "Rows not imported",
                ["row", "id", "field", "error"],
                [(r["row"], r["id"], r["error"].get("param"), r["error"]["message"]) for r in errors],
            ),
            err=not output.is_terminal(),
        )
    output.notice(
        f"{report['created']} created, {report['exists']} already existed, {report['error']} failed."
        + (f" Secrets written to {output.markup(secrets_out)}." if secrets_out and created else "")
    )

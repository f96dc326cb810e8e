"""``pennyworth users …``: invite, list, show, disable, enable and remove people; admin rights; the sweep."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from cli import output
from cli.keys import NONE_WORDS, audit_table


def path(person: str, *rest: str) -> str:
    return "/".join(["/admin/people", quote(person, safe="@"), *rest])


@click.group()
def users() -> None:
    """People: invite, disable (their keys stop at once), enable, remove (admins)."""


@users.command(name="list")
@output.json_option
@click.pass_obj
def list_users(state: Any, json_: bool) -> None:
    """Everyone the gateway knows, with teams, budget and last activity."""
    data = [p for page in state.client().pages("/admin/people", {"limit": 100}) for p in page["data"]]
    output.show({"object": "list", "data": data}, json_, lambda r: people_table(r["data"]))


@users.command()
@click.argument("email")
@click.option("--team", metavar="TEAM", help="Put them on this team (id or name).")
@click.option("--team-admin", is_flag=True, help="As the team's admin (with --team).")
@click.option("--budget", metavar="USD", help="Their monthly budget (default: the team's, else the deployment's).")
@click.option("--admin", is_flag=True, help="Make them an admin of the whole gateway.")
@output.json_option
@click.pass_obj
def invite(
    state: Any, email: str, team: str | None, team_admin: bool, budget: str | None, admin: bool, json_: bool
) -> None:
    """Invite EMAIL: Cognito e-mails a temporary password (on 'make dev': printed here)."""
    if team_admin and not team:
        raise click.UsageError("--team-admin needs --team.")
    body: dict[str, Any] = {"email": email}
    if team:
        body["team"] = team
        body["role"] = "admin" if team_admin else "member"
    if budget is not None:
        body["monthly_budget_usd"] = None if budget.lower() in NONE_WORDS else budget
    if admin:
        body["admin"] = True
    person = state.client().post("/admin/people", body)
    if json_:
        output.emit_json(person)
        return
    output.print_table(person_panel(person))
    if person.get("temporary_password"):
        click.echo(person["temporary_password"])  # alone on the last stdout line, as key secrets are
        output.notice("[bold]A local stack sends no mail: give them this temporary password.[/bold] "
                      "They choose their own at first sign-in.")  # fmt: skip
    else:
        output.notice("Cognito e-mailed them a temporary password; they choose their own at first sign-in.")


@users.command()
@click.argument("person")
@output.json_option
@click.pass_obj
def show(state: Any, person: str, json_: bool) -> None:
    """One person (e-mail or sub)."""
    output.show(state.client().get(path(person)), json_, person_panel)


@users.command()
@click.argument("person")
@click.option("--reason", help="Why (kept in the audit log).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@output.json_option
@click.pass_obj
def disable(state: Any, person: str, reason: str | None, yes: bool, json_: bool) -> None:
    """Disable PERSON: they cannot sign in, and their personal keys are refused from the next request."""
    if not yes:
        click.confirm(f"Disable {person}? Their personal keys stop working now", abort=True, err=True)
    result = state.client().post(path(person, "disable"), {"reason": reason} if reason else None)
    output.show(result, json_, person_panel)


@users.command()
@click.argument("person")
@output.json_option
@click.pass_obj
def enable(state: Any, person: str, json_: bool) -> None:
    """Enable PERSON again: the keys that were active work again."""
    output.show(state.client().post(path(person, "enable")), json_, person_panel)


@users.command()
@click.argument("person")
@click.option("--reason", help="Why (kept in the audit log).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@output.json_option
@click.pass_obj
def remove(state: Any, person: str, reason: str | None, yes: bool, json_: bool) -> None:
    """Remove PERSON from the user pool and every team; their keys stay refused. Cannot be undone."""
    if not yes:
        click.confirm(f"Remove {person} for good?", abort=True, err=True)
    result = state.client().delete(path(person), body={"reason": reason} if reason else None)
    output.show(result, json_, person_panel)


@users.command()
@click.argument("person")
@click.argument("grant", type=click.Choice(["on", "off"]))
@output.json_option
@click.pass_obj
def admin(state: Any, person: str, grant: str, json_: bool) -> None:
    """Make PERSON an admin of the gateway (on) or not (off). The last admin stays one."""
    output.show(state.client().patch(path(person), {"admin": grant == "on"}), json_, person_panel)


@users.command("audit")
@click.argument("person")
@output.json_option
@click.pass_obj
def person_audit(state: Any, person: str, json_: bool) -> None:
    """PERSON's audit log, oldest first."""
    events = [e for page in state.client().pages(path(person, "audit"), {"limit": 100}) for e in page["data"]]
    output.show({"object": "list", "data": events}, json_, lambda r: audit_table(r["data"]))


@users.command()
@output.json_option
@click.pass_obj
def sweep(state: Any, json_: bool) -> None:
    """Compare with the user pool now: off-board people disabled or deleted in Cognito directly."""
    result = state.client().post("/admin/people/sweep")
    output.show(result, json_, lambda r: output.table(
        "Sweep", ["users in the pool", "new", "disabled", "removed"],
        [(r["pool_users"], r["appeared"], r["disabled"], r["removed"])],
    ))  # fmt: skip


def _teams(person: dict[str, Any]) -> str | None:
    names = [f"{t['name'] or t['id']}{' (admin)' if t['role'] == 'admin' else ''}" for t in person["teams"]]
    return ", ".join(names) or None


def people_table(data: list[dict[str, Any]]) -> output.TableData:
    return output.table(
        f"{len(data)} people",
        ["e-mail", "status", "admin", "teams", "budget (USD/month)", "keys (active)", "last activity"],
        [(p["email"] or p["sub"], p["status"], "yes" if p.get("admin") else None, _teams(p),
          p.get("monthly_budget_usd"), f"{p['keys']['total']} ({p['keys']['active']})",
          p.get("last_activity_at")) for p in data],
    )  # fmt: skip


def person_panel(person: dict[str, Any]) -> output.TableData:
    rows = [
        ("e-mail", person["email"]),
        ("sub", person["sub"]),
        ("status", person["status"]),
        ("admin", "yes" if person.get("admin") else "no"),
        ("teams", _teams(person)),
        ("budget (USD/month)", person.get("monthly_budget_usd")),
        ("keys (active / all)", f"{person['keys']['active']} / {person['keys']['total']}"),
        ("last seen (console, CLI)", person.get("last_seen_at")),
        ("last key use", person.get("last_key_used_at")),
        ("since", person.get("created_at")),
    ]
    if person.get("status_changed_at"):
        rows.append(("status changed", f"{person['status_changed_at']} by {person.get('status_changed_by')}"))
    return output.table(person["email"] or person["sub"], ["field", "value"], rows, panel=True)

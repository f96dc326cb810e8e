"""``pennyworth teams …``: teams, their budgets, members and team admins, their keys and audit log."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from cli import output
from cli.keys import NONE_WORDS, audit_table, guardrail_body, guardrail_text, owner_label


def path(team: str, *rest: str) -> str:
    """``/admin/teams/<team>/…`` with each segment quoted (a team name may hold spaces or slashes)."""
    return "/".join(["/admin/teams", quote(team, safe="@"), *(quote(part, safe="@") for part in rest)])


def _amount(text: str | None) -> str | None:
    return None if text is None or text.lower() in NONE_WORDS else text


@click.group()
def teams() -> None:
    """Teams: a shared monthly budget, members and team admins, keys the team owns."""


@teams.command(name="list")
@output.json_option
@click.pass_obj
def list_teams(state: Any, json_: bool) -> None:
    """Every team (admins), or the teams you are on, with this month's spend."""
    data = [team for page in state.client().pages("/admin/teams", {"limit": 100}) for team in page["data"]]
    output.show({"object": "list", "data": data}, json_, lambda r: teams_table(r["data"]))


@teams.command()
@click.argument("name")
@click.option("--budget", metavar="USD", help="The team's monthly budget, e.g. 500.00 (default: none).")
@click.option("--member-budget", metavar="USD", help="The monthly budget a person invited into the team starts with.")
@output.json_option
@click.pass_obj
def create(state: Any, name: str, budget: str | None, member_budget: str | None, json_: bool) -> None:
    """Create a team (admins)."""
    body: dict[str, Any] = {"name": name}
    if budget is not None:
        body["monthly_budget_usd"] = _amount(budget)
    if member_budget is not None:
        body["default_member_budget_usd"] = _amount(member_budget)
    output.show(state.client().post("/admin/teams", body), json_, team_panel)


@teams.command()
@click.argument("team")
@output.json_option
@click.pass_obj
def show(state: Any, team: str, json_: bool) -> None:
    """A team (id or name): budget and spend; members and keys for its admins."""
    found = state.client().get(path(team))
    output.show(found, json_, team_panel)
    if not json_ and found.get("members") is not None:
        output.print_table(members_table(found["members"]))


@teams.command()
@click.argument("team")
@click.argument("new_name")
@output.json_option
@click.pass_obj
def rename(state: Any, team: str, new_name: str, json_: bool) -> None:
    """Rename a team (admins)."""
    output.show(state.client().patch(path(team), {"name": new_name}), json_, team_panel)


@teams.command()
@click.argument("team")
@click.argument("usd")
@output.json_option
@click.pass_obj
def budget(state: Any, team: str, usd: str, json_: bool) -> None:
    """Set TEAM's monthly budget to USD ("none": no team budget). Admins."""
    found = state.client().patch(path(team), {"monthly_budget_usd": _amount(usd)})
    output.show(found, json_, team_panel)
    if not json_ and found.get("notice"):
        output.notice(output.markup(found["notice"]))


@teams.command("member-budget")
@click.argument("team")
@click.argument("usd")
@output.json_option
@click.pass_obj
def member_budget(state: Any, team: str, usd: str, json_: bool) -> None:
    """Set the monthly budget people invited into TEAM start with ("none": the deployment's default)."""
    output.show(state.client().patch(path(team), {"default_member_budget_usd": _amount(usd)}), json_, team_panel)


@teams.command()
@click.argument("team")
@click.argument("guardrail")
@output.json_option
@click.pass_obj
def guardrail(state: Any, team: str, guardrail: str, json_: bool) -> None:
    """Set the Bedrock guardrail every call charged to TEAM carries, e.g. "abc123:1" ("none": clear). Admins.

    A guardrail an admin put on a key wins over the team's; the team's wins over the model's and
    over one a key's owner chose.
    """
    body = {"guardrail": None if guardrail.lower() in NONE_WORDS else guardrail_body(guardrail)}
    found = state.client().patch(path(team), body)
    output.show(found, json_, team_panel)
    if not json_ and found.get("notice"):
        output.notice(output.markup(found["notice"]))


@teams.command()
@click.argument("team")
@click.option("--force", is_flag=True, help="Revoke the keys charged to the team, then delete it.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@output.json_option
@click.pass_obj
def delete(state: Any, team: str, force: bool, yes: bool, json_: bool) -> None:
    """Delete a team (admins). Refused while keys are charged to it, unless --force revokes them."""
    if not yes:
        what = " and revoke every key charged to it" if force else ""
        click.confirm(f"Delete team {team!r}{what}?", abort=True, err=True)
    result = state.client().delete(path(team), {"force": "true" if force else None})
    if json_:
        output.emit_json(result)
        return
    output.notice(
        f"Deleted team {output.markup(result['name'])}"
        + (f"; revoked {len(result['revoked_keys'])} key(s)." if result["revoked_keys"] else ".")
    )


@teams.command("add")
@click.argument("team")
@click.argument("person")
@click.option("--admin", "team_admin", is_flag=True, help="As a team admin (default: member).")
@output.json_option
@click.pass_obj
def add_member(state: Any, team: str, person: str, team_admin: bool, json_: bool) -> None:
    """Put PERSON (e-mail or sub) on TEAM (admins, and the team's admins)."""
    body = {"person": person, "role": "admin" if team_admin else "member"}
    member = state.client().post(path(team, "members"), body)
    output.show(member, json_, lambda m: members_table([m]))


@teams.command("role")
@click.argument("team")
@click.argument("person")
@click.argument("role", type=click.Choice(["member", "admin"]))
@output.json_option
@click.pass_obj
def set_role(state: Any, team: str, person: str, role: str, json_: bool) -> None:
    """Make PERSON a member or an admin of TEAM (never yourself)."""
    member = state.client().patch(path(team, "members", person), {"role": role})
    output.show(member, json_, lambda m: members_table([m]))


@teams.command("remove")
@click.argument("team")
@click.argument("person")
@output.json_option
@click.pass_obj
def remove_member(state: Any, team: str, person: str, json_: bool) -> None:
    """Take PERSON off TEAM; their keys charged to the team are charged to them alone."""
    result = state.client().delete(path(team, "members", person))
    if json_:
        output.emit_json(result)
        return
    detached = result.get("detached_keys") or []
    output.notice(
        f"Removed {output.markup(result['email'] or result['sub'])} from the team"
        + (f"; {len(detached)} of their key(s) are now charged to them alone." if detached else ".")
    )


@teams.command("keys")
@click.argument("team")
@output.json_option
@click.pass_obj
def team_keys(state: Any, team: str, json_: bool) -> None:
    """The keys charged to TEAM: its own and its members' (its admins and admins)."""
    data = [k for page in state.client().pages("/admin/keys", {"team": team, "limit": 100}) for k in page["data"]]

    def render(result: dict[str, Any]) -> Any:
        return output.table(
            f"{len(result['data'])} keys charged to {team}",
            ["key id", "name", "owner", "status", "budget", "last used"],
            [(k["key_id"], k["name"] or None, owner_label(k), k["status"], k["monthly_budget_usd"],
              k["last_used_at"]) for k in result["data"]],
        )  # fmt: skip

    output.show({"object": "list", "data": data}, json_, render)


@teams.command("audit")
@click.argument("team")
@output.json_option
@click.pass_obj
def team_audit(state: Any, team: str, json_: bool) -> None:
    """TEAM's audit log, oldest first (admins, and the team's admins)."""
    events = [e for page in state.client().pages(path(team, "audit"), {"limit": 100}) for e in page["data"]]
    output.show({"object": "list", "data": events}, json_, lambda r: audit_table(r["data"]))


def teams_table(data: list[dict[str, Any]]) -> output.TableData:
    return output.table(
        f"{len(data)} teams",
        ["name", "id", "your role", "budget (USD/month)", "spent", "remaining", "period"],
        [(t["name"], t["id"], t.get("your_role"), t["monthly_budget_usd"], t["spent_usd"], t.get("remaining_usd"),
          t["period"]) for t in data],
    )  # fmt: skip


def team_panel(team: dict[str, Any]) -> output.TableData:
    keys = team.get("keys")
    rows = [
        ("id", team["id"]),
        ("name", team["name"]),
        ("your role", team.get("your_role")),
        ("budget (USD/month)", team["monthly_budget_usd"]),
        (f"spent in {team['period']}", team["spent_usd"]),
        ("remaining", team.get("remaining_usd")),
        ("requests", team.get("requests")),
        ("new members' budget", team.get("default_member_budget_usd")),
        ("guardrail", guardrail_text(team.get("guardrail"))),
        ("keys (active / all; team's own)",
         f"{keys['active']} / {keys['total']}; {keys['team_owned']}" if keys else None),
        ("created", f"{team.get('created_at')} by {team.get('created_by')}"),
    ]  # fmt: skip
    return output.table(f"team {team['name']}", ["field", "value"], rows, panel=True)


def members_table(members: list[dict[str, Any]]) -> output.TableData:
    return output.table(
        f"{len(members)} members",
        ["e-mail", "role", "status", "added", "by"],
        [(m["email"] or m["sub"], m["role"], m.get("status"), m.get("added_at"), m.get("added_by")) for m in members],
    )

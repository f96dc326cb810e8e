"""Roles: who may do what to a team, a person or a key, decided in one place.

* **Admin** (the Cognito ``admins`` group, checked against the pool on every call): everything.
* **Team admin** (``admin`` on a team): that team's members (add, remove, change the role of
  anyone but themselves), its keys (the team's own and the members' keys charged to it:
  create, change, rotate, revoke, with budgets up to the team's own), its members' budgets
  (up to the team's own, never their own), the default budget of new members, its usage.
* **Member**: their own keys (charging them to one of their teams), their own usage, the
  totals of their teams.

The roles on teams come from the directory, read once per request (``Caller.teams``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from chalicelib import errors
from chalicelib.admin.auth import Principal
from chalicelib.admin.directory import Directory, Membership
from chalicelib.keys.store import KeyRecord
from chalicelib.shared import scopes
from chalicelib.shared.money import usd


@dataclass
class Caller:
    """The verified caller of one request, and their teams (read on first use)."""

    principal: Principal
    directory: Directory
    _teams: dict[str, Membership] | None = field(default=None, repr=False)

    @property
    def sub(self) -> str:
        return self.principal.sub

    @property
    def email(self) -> str | None:
        return self.principal.email

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin

    @property
    def label(self) -> str:
        return self.principal.email or self.principal.sub

    def teams(self) -> dict[str, Membership]:
        """The caller's memberships, by team id."""
        if self._teams is None:
            self._teams = {m.team_id: m for m in self.directory.memberships_of(self.sub)}
        return self._teams

    def role_in(self, team_id: str | None) -> str | None:
        """``admin``, ``member``, or None (not on the team)."""
        if not team_id:
            return None
        membership = self.teams().get(team_id)
        return membership.role if membership else None

    def is_team_admin(self, team_id: str | None) -> bool:
        return self.role_in(team_id) == "admin"

    def manages_team(self, team_id: str | None) -> bool:
        """An admin, or an admin of this team."""
        return self.is_admin or self.is_team_admin(team_id)

    def require_team_admin(self, team_id: str, what: str) -> None:
        """Refuse unless the caller is an admin or an admin of ``team_id``.

        Raises
        ------
        PermissionDenied
            ``team_admin_only``.
        """
        if not self.manages_team(team_id):
            raise errors.PermissionDenied(
                f"Only an admin or an admin of this team can {what}.", param="team", code="team_admin_only"
            )

    def require_admin(self, what: str) -> None:
        if not self.is_admin:
            raise errors.PermissionDenied(f"Only admins can {what}.", code="admin_only")

    def owns(self, record: KeyRecord) -> bool:
        return record.owner_sub == self.sub

    def manages_key(self, record: KeyRecord) -> bool:
        """An admin, the key's owner, or an admin of the team the key is charged to."""
        return self.is_admin or self.owns(record) or self.is_team_admin(record.team_id)

    def sets_limits_on(self, record_team: str | None, owner_sub: str) -> bool:
        """True when the caller's limits on such a key bind its owner (an admin's, or its team admin's).

        A person's own limits on their own key are theirs to loosen again.
        """
        if self.is_admin:
            return True
        return owner_sub != self.sub and self.is_team_admin(record_team)


def within_team_budget(amount: Decimal | None, team_budget: Decimal | None, param: str, *, what: str) -> None:
    """Refuse a team admin's budget above the team's own (or a removal of it while the team has one).

    Raises
    ------
    PermissionDenied
        ``above_team_budget``.
    """
    if team_budget is None:
        return
    if amount is None or amount > team_budget:
        shown = "no budget" if amount is None else f"${usd(amount)}"
        raise errors.PermissionDenied(
            f"A team admin can set {what} up to the team's own budget of ${usd(team_budget)}; {shown} is more. "
            "Ask an admin.",
            param=param,
            code="above_team_budget",
        )


def team_of_owner(owner_sub: str) -> str | None:
    """The team that owns a key of this owner (None: a person's key)."""
    return scopes.owning_team(owner_sub)

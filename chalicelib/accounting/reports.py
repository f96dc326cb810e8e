"""The daily cost report: yesterday per owner, key and model, with spike and budget alerts.

Runs as its own scheduled Lambda (``daily_cost_report`` in app.py) and on
demand (``POST /admin/reports/daily``). It reads only aggregates, which the
ledger keeps exact, then publishes:

* CloudWatch metrics (namespace ``Pennyworth``): ``CostUSD``, ``Requests``,
  ``InputTokens``, ``OutputTokens``, overall and per ``Model``, and ``CostUSD``
  per ``Team`` (one billable custom metric per team; per-key or per-owner
  dimensions would be one each per person, so they are left to the stored
  report);
* the report itself, stored in the usage table (``REPORT#<day>``);
* one SNS notification (e-mail subscribers) and, optionally, a Slack post (plain text: Slack's
  ``&``, ``<``, ``>`` escaped, its formatting off).

Idempotent: the first run for a day claims the day with a conditional write
and records each delivery step as done; a second run for the same day sends
nothing again. A run that died mid-way is resumed (only its missing steps)
after a 10-minute lease.

Corrections: an admin can re-run a reported day with ``force`` (``POST
/admin/reports/daily {"day": …, "force": true}``, ``pennyworth report run
--force``). That builds the report again as revision n+1, stores it, sends the
notification again marked as a correction, and publishes to CloudWatch only
the *difference* from what earlier revisions published, so the day's ``Sum``
(what the cost alarm and the dashboard read) is the corrected value, never
the two added up. A forced run is idempotent too: it resumes its own missing
steps, and a plain run afterwards sends nothing.

Budget alerts are about the month in progress when the report is generated
(on the 1st, the new month: last month's budgets are over), from the day
aggregates of that month so far.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib import errors
from chalicelib.accounting.ledger import Ledger
from chalicelib.observability import logger
from chalicelib.shared import scopes
from chalicelib.shared.dates import isoformat, parse_day_text, utcnow
from chalicelib.shared.money import usd
from chalicelib.shared.scopes import Scope
from chalicelib.shared.text import visible

LEASE = timedelta(minutes=10)
BUDGET_THRESHOLDS = (Decimal("1.0"), Decimal("0.8"))
STEPS = ("metrics", "sns", "slack")
#: How far back CloudWatch's PutMetricData accepts a datum (two weeks), less a margin for the call.
METRICS_MAX_AGE = timedelta(days=14) - timedelta(hours=1)
_TOP = 10


@dataclass(frozen=True)
class TeamInfo:
    """What a report says about a team besides its numbers: its name and who manages it."""

    name: str | None
    admins: tuple[str, ...] = ()


#: A team's name and admins, by team id (the directory knows them; accounting does not).
DescribeTeams = Callable[[list[str]], dict[str, TeamInfo]]


@dataclass(frozen=True)
class ReportConfig:
    """Where to publish, and what counts as a spike."""

    topic_arn: str | None
    slack_parameter: str | None
    spike_threshold_usd: Decimal | None
    spike_factor: Decimal
    namespace: str


def parse_day(text: str | None, *, today: date) -> date:
    """A report day from ``YYYY-MM-DD`` (absent or null: yesterday, UTC).

    Raises
    ------
    InvalidRequest
        Not a date (an empty string is none), or not a finished day.
    """
    if text is None:
        return today - timedelta(days=1)
    day = parse_day_text(text, "day")
    if day >= today:
        raise errors.InvalidRequest(f"{day} is not over yet (UTC); report a past day.", param="day")
    return day


class ReportService:
    """Builds, stores and publishes daily reports. AWS clients are injected."""

    def __init__(
        self,
        ledger: Ledger,
        keys_table: Any,
        config: ReportConfig,
        *,
        cloudwatch: Any,
        sns: Any,
        ssm: Any,
        post: Callable[[str, bytes], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        describe_teams: DescribeTeams | None = None,
    ) -> None:
        self._describe_teams = describe_teams or (lambda ids: {})
        self._ledger = ledger
        self._table = ledger.table
        self._keys = keys_table
        self._config = config
        self._cloudwatch = cloudwatch
        self._sns = sns
        self._ssm = ssm
        self._post = post or _post_json
        self._clock = clock

    # -- building ----------------------------------------------------------------------------

    def build(self, day: date) -> dict[str, Any]:
        """The report for ``day`` as plain JSON-safe data (money as strings)."""
        rows = self._day_aggregates(day)
        total = rows.pop(scopes.EVERYTHING, None) or _zero()
        # The mean is over the trailing days that had traffic, so a young
        # deployment is not flagged merely for having had quiet days before.
        history = [
            self._ledger.aggregate(scopes.EVERYTHING, scopes.day_period(day - timedelta(days=n))) for n in range(1, 8)
        ]
        active = [Decimal(h["cost"]) for h in history if h["requests"]]
        mean = sum(active, Decimal(0)) / len(active) if active else Decimal(0)
        owners = self._owner_emails(rows)
        by = {
            kind: sorted(
                ({"id": scope.id, **_money_row(row)} for scope, row in rows.items() if scope.kind == kind),
                key=lambda r: Decimal(r["cost_usd"]),
                reverse=True,
            )
            for kind in (scopes.OWNER, scopes.KEY, scopes.MODEL, scopes.TEAM)
        }
        for row in by[scopes.OWNER]:
            row["email"] = owners.get(row["id"])
        teams = self._describe_teams([row["id"] for row in by[scopes.TEAM]])
        for row in by[scopes.TEAM]:
            info = teams.get(row["id"])
            row["name"] = info.name if info else None
        alerts = (
            self._spike_alerts(day, Decimal(total["cost"]), mean)
            + _capped_alerts(day, total)
            + self._budget_alerts(self._clock().date())
        )
        return {
            "day": day.isoformat(),
            "generated_at": isoformat(self._clock()),
            "total": _money_row(total),
            "trailing_7_day_mean_usd": usd(mean),
            "by_owner": by[scopes.OWNER],
            "by_key": by[scopes.KEY],
            "by_model": by[scopes.MODEL],
            "by_team": by[scopes.TEAM],
            "alerts": alerts,
        }

    def _day_aggregates(self, day: date) -> dict[Scope, dict[str, Any]]:
        return {Scope.parse(item["gsi1sk"]): item for item in self._ledger.day_aggregates(day)}

    def _owner_emails(self, rows: dict[Scope, dict[str, Any]]) -> dict[str, str]:
        key_ids = [scope.id for scope in rows if scope.kind == scopes.KEY]
        return {
            record["owner_sub"]: record["owner_email"]
            for record in self._key_records(key_ids).values()
            if record.get("owner_email")
        }

    def _key_records(self, key_ids: list[str]) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        for start in range(0, len(key_ids), 100):
            request = {self._keys.name: {"Keys": [{"key_id": k} for k in key_ids[start : start + 100]]}}
            while request:
                page = self._keys.meta.client.batch_get_item(RequestItems=request)
                for item in page["Responses"].get(self._keys.name, []):
                    records[item["key_id"]] = item
                request = page.get("UnprocessedKeys") or None
        return records

    def _spike_alerts(self, day: date, cost: Decimal, mean: Decimal) -> list[dict[str, str]]:
        alerts = []
        threshold = self._config.spike_threshold_usd
        if threshold is not None and cost > threshold:
            alerts.append(
                {
                    "kind": "spike",
                    "message": f"{day}: cost ${usd(cost)} is over the ${usd(threshold)} daily threshold.",
                }
            )
        factor = self._config.spike_factor
        if mean > 0 and cost > factor * mean:
            alerts.append(
                {
                    "kind": "spike",
                    "message": f"{day}: cost ${usd(cost)} is over {usd(factor)}x "
                    f"the trailing 7-day mean (${usd(mean)}).",
                }
            )
        return alerts

    def _budget_alerts(self, today: date) -> list[dict[str, str]]:
        """Keys, owners and teams at 80% or 100% of this month's budget (the month of ``today``, so far).

        A team's alert names the team and its admins, who can act on it.
        """
        month = today.strftime("%Y-%m")
        spend: dict[Scope, Decimal] = {}
        for n in range(today.day):
            for item in self._ledger.day_aggregates(today.replace(day=n + 1)):
                scope = Scope.parse(item["gsi1sk"])
                if scope.kind in scopes.BUDGET_KINDS:
                    spend[scope] = spend.get(scope, Decimal(0)) + Decimal(item.get("cost", 0))
        alerts = []
        key_ids = [scope.id for scope in spend if scope.kind == scopes.KEY]
        for key_id, record in sorted(self._key_records(key_ids).items()):
            budget = record.get("monthly_budget_usd")
            label = f"key pw-{key_id}" + (f" ({record['name']})" if record.get("name") else "")
            alerts.extend(_budget_alert(label, spend[scopes.key(key_id)], budget, month))
        teams = self._describe_teams(sorted(scope.id for scope in spend if scope.kind == scopes.TEAM))
        for scope, spent in sorted(spend.items()):
            if scope.kind == scopes.KEY:
                continue
            item = self._table.get_item(Key=scope.budget_item).get("Item")
            budget = item and item["monthly_budget_usd"]
            if scope.kind == scopes.OWNER:
                alerts.extend(_budget_alert(f"owner {scope.id}", spent, budget, month))
                continue
            info = teams.get(scope.id) or TeamInfo(None)
            label = f"team {info.name} ({scope.id})" if info.name else f"team {scope.id}"
            found = _budget_alert(label, spent, budget, month)
            for alert in found:
                alert["team"] = scope.id
                alert["message"] += (
                    f" Team admins: {', '.join(info.admins)}." if info.admins else " The team has no admin."
                )
            alerts.extend(found)
        return alerts

    # -- publishing --------------------------------------------------------------------------

    def run_day(self, day: str | None = None, *, force: bool = False) -> dict[str, Any]:
        """``run`` for a ``YYYY-MM-DD`` string (default: yesterday, UTC), as routes and the schedule call it."""
        return self.run(parse_day(day, today=self._clock().date()), force=force)

    def run(self, day: date, *, force: bool = False) -> dict[str, Any]:
        """Build, store and publish the report for ``day`` once; ``force`` publishes a corrected revision.

        Raises
        ------
        Conflict
            A forced re-run while another run of that day holds its lease.
        """
        from botocore.exceptions import ClientError

        now = self._clock()
        report = self.build(day)
        key = scopes.report_key(day)
        stored = self._table.get_item(Key=key, ConsistentRead=True).get("Item")
        claim = self._claim_first if not stored else self._claim_again if force else self._claim_resume
        try:
            claim(key, report, stored, now)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            if force:
                raise errors.Conflict(
                    f"The report for {day} is being sent right now; retry in a few minutes.", code="report_running"
                ) from None
            stored = self._table.get_item(Key=key, ConsistentRead=True)["Item"]
            return {
                "day": day.isoformat(),
                "status": "already " + stored["status"],
                "revision": int(stored.get("revision", 1)),
                "sent": [],
                "report": json.loads(stored["report"]),
            }
        current = self._table.get_item(Key=key, ConsistentRead=True)["Item"]
        revision = int(current.get("revision", 1))
        report = json.loads(current["report"])
        previous = current.get("steps") or {}
        published = {name: Decimal(value) for name, value in (current.get("published") or {}).items()}
        sent = []
        for step in STEPS:
            if step in previous:
                continue
            if self._deliver(step, day, report, revision=revision, published=published):
                updates = {"#step": step}
                expression = "SET steps.#step = :at"
                values: dict[str, Any] = {":at": isoformat(self._clock())}
                if step == "metrics":
                    expression += ", published = :published"
                    values[":published"] = {name: str(value) for name, value in metric_totals(report).items()}
                self._table.update_item(
                    Key=key,
                    UpdateExpression=expression,
                    ExpressionAttributeNames=updates,
                    ExpressionAttributeValues=values,
                )
                sent.append(step)
        self._table.update_item(
            Key=key,
            UpdateExpression="SET #status = :done",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":done": "done"},
        )
        logger.info(
            "daily report",
            extra={"day": day.isoformat(), "revision": revision, "sent": sent, "alerts": len(report["alerts"])},
        )
        return {"day": day.isoformat(), "status": "sent", "revision": revision, "sent": sent, "report": report}

    def _claim_first(self, key: dict[str, str], report: dict[str, Any], stored: Any, now: datetime) -> None:
        self._table.put_item(
            Item={
                **key,
                "type": "report",
                "status": "running",
                "revision": 1,
                "report": json.dumps(report),
                "lease_until": isoformat(now + LEASE),
                "steps": {},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )

    def _claim_resume(self, key: dict[str, str], report: dict[str, Any], stored: Any, now: datetime) -> None:
        # A run that died mid-way: take over its revision (and its report) after the lease.
        self._table.update_item(
            Key=key,
            UpdateExpression="SET lease_until = :lease",
            ConditionExpression="#status <> :done AND lease_until < :now",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":done": "done", ":now": isoformat(now), ":lease": isoformat(now + LEASE)},
        )

    def _claim_again(self, key: dict[str, str], report: dict[str, Any], stored: Any, now: datetime) -> None:
        # A correction: a new revision with a fresh report and no steps done, unless a run holds the lease.
        revision = int(stored.get("revision", 1))
        self._table.update_item(
            Key=key,
            UpdateExpression="SET #status = :running, revision = :next, report = :report, "
            "lease_until = :lease, steps = :none",
            ConditionExpression="(#status = :done OR lease_until < :now) AND "
            "(revision = :revision OR attribute_not_exists(revision))",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":done": "done",
                ":running": "running",
                ":now": isoformat(now),
                ":lease": isoformat(now + LEASE),
                ":revision": revision,
                ":next": revision + 1,
                ":report": json.dumps(report),
                ":none": {},
            },
        )

    def stored(self, day: date) -> dict[str, Any]:
        """A day's stored report.

        Raises
        ------
        NotFound
            No report was run for that day.
        """
        item = self._table.get_item(Key=scopes.report_key(day)).get("Item")
        if not item:
            raise errors.NotFound(f"No report has been run for {day}.", param="day", code="report_not_found")
        return {
            "day": day.isoformat(),
            "status": item["status"],
            "revision": int(item.get("revision", 1)),
            "steps": dict(item.get("steps") or {}),
            "report": json.loads(item["report"]),
        }

    def _deliver(
        self, step: str, day: date, report: dict[str, Any], *, revision: int, published: dict[str, Decimal]
    ) -> bool:
        corrected = f" (corrected, revision {revision})" if revision > 1 else ""
        if step == "metrics":
            if datetime(day.year, day.month, day.day, tzinfo=UTC) < self._clock() - METRICS_MAX_AGE:
                # CloudWatch refuses datums stamped more than two weeks back: a late correction of an
                # older day is e-mailed, and its metrics stay as they were (the ledger is the bill).
                logger.warning("report metrics too old for CloudWatch; not published", extra={"day": str(day)})
                return False
            data = metric_data(day, report, already=published)
            for start in range(0, len(data), 1000):
                self._cloudwatch.put_metric_data(
                    Namespace=self._config.namespace, MetricData=data[start : start + 1000]
                )
            return True
        if step == "sns":
            if not self._config.topic_arn:
                return False
            self._sns.publish(
                TopicArn=self._config.topic_arn,
                Subject=f"pennyworth cost {day}{corrected}: ${report['total']['cost_usd']}"[:100],
                Message=render_text(report, revision=revision),
            )
            return True
        if not self._config.slack_parameter:
            return False
        try:
            url = self._ssm.get_parameter(Name=self._config.slack_parameter, WithDecryption=True)["Parameter"]["Value"]
            text = slack_text(render_text(report, revision=revision))
            self._post(url, json.dumps({"text": text, "mrkdwn": False}).encode())
        except Exception as exc:  # noqa: BLE001 - Slack is optional; the e-mail went out
            logger.warning("slack post failed; will retry on the next run", extra={"reason": str(exc)})
            return False
        return True


_METRICS = (
    ("CostUSD", "cost_usd", "None"),
    ("Requests", "requests", "Count"),
    ("InputTokens", "input_tokens", "Count"),
    ("OutputTokens", "output_tokens", "Count"),
)


#: Only the cost goes per team: each team is one billable custom metric (about $0.30 a month).
_TEAM_METRICS = ("CostUSD",)


def metric_totals(report: dict[str, Any]) -> dict[str, Decimal]:
    """Every value the report publishes, by ``metric``, ``metric|model`` or ``metric|Team=<id>``."""
    totals: dict[str, Decimal] = {}
    rows = [("", report["total"])] + [(m["id"], m) for m in report["by_model"]]
    for model, row in rows:
        for name, column, _ in _METRICS:
            totals[f"{name}|{model}" if model else name] = Decimal(str(row[column]))
    for team in report.get("by_team", []):
        for name, column, _ in _METRICS:
            if name in _TEAM_METRICS:
                totals[f"{name}|Team={team['id']}"] = Decimal(str(team[column]))
    return totals


def metric_data(
    day: date, report: dict[str, Any], *, already: dict[str, Decimal] | None = None
) -> list[dict[str, Any]]:
    """CloudWatch datums for the day: totals, per model, and the cost per team.

    With ``already`` (what earlier revisions published), only the differences:
    CloudWatch adds datums of the same timestamp up, so the day's ``Sum`` becomes
    the new value.
    """
    stamp = datetime(day.year, day.month, day.day, tzinfo=UTC)
    units = {name: unit for name, _, unit in _METRICS}
    already = already or {}
    totals = metric_totals(report)
    data = []
    for name in sorted(set(totals) | set(already)):
        delta = totals.get(name, Decimal(0)) - already.get(name, Decimal(0))
        if already and not delta:
            continue
        metric, _, dimension = name.partition("|")
        if dimension.startswith("Team="):
            dimensions = [{"Name": "Team", "Value": dimension.removeprefix("Team=")}]
        else:
            dimensions = [{"Name": "Model", "Value": dimension}] if dimension else []
        # CloudWatch stores doubles: the metric is for graphs and alarms; the bill is the ledger.
        data.append(
            {
                "MetricName": metric,
                "Dimensions": dimensions,
                "Timestamp": stamp,
                "Value": float(delta),
                "Unit": units[metric],
            }
        )
    return data


def render_text(report: dict[str, Any], *, revision: int = 1) -> str:
    """The notification: totals, alerts first, then the biggest owners, keys and models.

    Key names and e-mail addresses are whoever chose them: a control character in one (a newline
    that forges a line of the report, an escape sequence for the terminal ``pennyworth report``
    prints to) is shown as an escape, so each line of the text is one line of ours.
    """
    total = report["total"]
    corrected = f" — corrected (revision {revision})" if revision > 1 else ""
    lines = [
        f"pennyworth daily cost report for {report['day']} (UTC){corrected}",
        "",
        f"Total: ${total['cost_usd']} over {total['requests']} requests "
        f"({total['input_tokens']} input / {total['output_tokens']} output tokens)",
        f"Trailing 7-day mean: ${report['trailing_7_day_mean_usd']}",
        "",
    ]
    if report["alerts"]:
        lines += ["ALERTS", *(f"- {a['kind'].upper()}: {a['message']}" for a in report["alerts"]), ""]
    for title, rows, label in (
        ("By team", report.get("by_team", []), lambda r: f"{r['name']} ({r['id']})" if r.get("name") else r["id"]),
        ("By owner", report["by_owner"], lambda r: r.get("email") or r["id"]),
        ("By key", report["by_key"], lambda r: f"pw-{r['id']}"),
        ("By model", report["by_model"], lambda r: r["id"]),
    ):
        if rows:
            lines.append(f"{title}:")
            lines += [f"  {label(r)}  ${r['cost_usd']}  ({r['requests']} requests)" for r in rows[:_TOP]]
            lines.append("")
    return "\n".join(visible(line) for line in lines).rstrip() + "\n"


def slack_text(text: str) -> str:
    """``text`` for a Slack message, shown as it is: ``&``, ``<`` and ``>`` as Slack's escapes.

    Slack reads ``<…>`` as a control sequence: a key named ``<!channel>`` would notify the whole
    channel, and ``<https://evil.example|session expired>`` would show a link under other words.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _budget_alert(label: str, spent: Decimal, budget: Decimal | None, month: str) -> list[dict[str, str]]:
    if not budget:
        return []
    share = spent / Decimal(budget)
    for threshold in BUDGET_THRESHOLDS:
        if share >= threshold:
            return [
                {
                    "kind": "budget",
                    "message": f"{label} has used {int(share * 100)}% of its ${usd(Decimal(budget))} budget "
                    f"for {month} (${usd(spent)}).",
                }
            ]
    return []


def _capped_alerts(day: date, total: dict[str, Any]) -> list[dict[str, str]]:
    count = int(total.get("capped_requests", 0))
    if not count:
        return []
    return [
        {
            "kind": "capped",
            "message": f"{day}: {count} request(s) used more than admission reserved for them; each was billed "
            f"its reservation and ${usd(Decimal(total.get('capped_usd', 0)))} of usage was not charged "
            "(log lines 'usage_capped' name them).",
        }
    ]


def _zero() -> dict[str, Any]:
    return {"cost": Decimal(0), "requests": 0, "input_tokens": 0, "output_tokens": 0}


def _money_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "cost_usd": usd(Decimal(row.get("cost", 0))),
        "requests": int(row.get("requests", 0)),
        "input_tokens": int(row.get("input_tokens", 0)),
        "output_tokens": int(row.get("output_tokens", 0)),
    }


def _post_json(url: str, body: bytes) -> None:
    if not url.startswith("https://"):
        raise ValueError("the Slack webhook must be an https:// URL")
    request = urllib.request.Request(  # noqa: S310 - https only, checked above
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - https only, checked above
        pass

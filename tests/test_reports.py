"""The daily report against moto (DynamoDB, CloudWatch, SNS→SQS, SSM)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import boto3
import pytest

from chalicelib import errors
from chalicelib.accounting.ledger import Ledger, new_entry
from chalicelib.accounting.metering import Meter
from chalicelib.accounting.reports import ReportConfig, ReportService, TeamInfo, parse_day, render_text
from chalicelib.keys.store import KeyStore
from chalicelib.shared import scopes
from chalicelib.shared.money import Prices
from chalicelib.shared.usage import TokenUsage
from local.stream_aggregator import drain

PRICES = Prices(input=Decimal("0.000001"), output=Decimal("0.000002"), cache_read=Decimal(0), cache_write=Decimal(0))
DAY = date(2026, 11, 25)


@pytest.fixture
def inbox(aws):
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="reports")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return topic, sqs, queue


def received(sqs, queue) -> list[str]:
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    return [m["Body"] for m in messages]


def service(usage_table, keys_table, topic, *, slack=None, posts=None, threshold=None, now=None, teams=None):
    config = ReportConfig(
        topic_arn=topic,
        slack_parameter=slack,
        spike_threshold_usd=threshold,
        spike_factor=Decimal(3),
        namespace="Pennyworth",
    )
    return ReportService(
        Ledger(usage_table),
        keys_table,
        config,
        cloudwatch=boto3.client("cloudwatch", region_name="us-east-1"),
        sns=boto3.client("sns", region_name="us-east-1"),
        ssm=boto3.client("ssm", region_name="us-east-1"),
        post=(lambda url, body: posts.append((url, json.loads(body)))) if posts is not None else None,
        clock=lambda: now or datetime(2026, 11, 26, 6, 0, tzinfo=UTC),
        describe_teams=teams,
    )


def spend(usage_table, key, day: date, requests: int, tokens: int) -> Decimal:
    ledger = Ledger(usage_table)
    total = Decimal(0)
    for n in range(requests):
        entry = new_entry(
            request_id=f"{day}-{key.key_id}-{n}",
            key_id=key.key_id,
            owner_sub=key.owner_sub,
            team_id=key.team_id,
            model="nova-micro",
            bedrock_model_id="us.amazon.nova-micro-v1:0",
            operation="chat",
            usage=TokenUsage(input_tokens=tokens, output_tokens=tokens),
            prices=PRICES,
            latency_ms=1,
            status="ok",
            at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
        )
        ledger.record(entry)
        total += entry.cost
    drain(usage_table)  # the aggregator's work, done now
    return total


def test_report_totals_spike_and_budget_alerts_then_runs_once(usage_table, keys_table, inbox) -> None:
    topic, sqs, queue = inbox
    store = KeyStore(keys_table)
    alice, _ = store.create(
        owner_sub="alice", owner_email="alice@example.com", name="laptop", monthly_budget_usd=Decimal("0.035")
    )
    bob, _ = store.create(owner_sub="bob", owner_email="bob@example.com")
    for back in range(1, 8):  # a quiet week: $0.002 a day
        spend(usage_table, bob, date(2026, 11, 25 - back), 1, 1000)
    day_cost = spend(usage_table, alice, DAY, 10, 1000) + spend(usage_table, bob, DAY, 2, 500)

    reports = service(usage_table, keys_table, topic)
    result = reports.run(DAY)

    report = result["report"]
    assert Decimal(report["total"]["cost_usd"]) == day_cost and report["total"]["requests"] == 12
    assert [o["email"] for o in report["by_owner"]] == ["alice@example.com", "bob@example.com"]
    kinds = [a["kind"] for a in report["alerts"]]
    assert kinds.count("spike") == 1  # $0.032 vs a $0.002 mean
    budget_alerts = [a["message"] for a in report["alerts"] if a["kind"] == "budget"]
    assert budget_alerts == [f"key pw-{alice.key_id} (laptop) has used 85% of its $0.035 budget for 2026-11 ($0.03)."]
    assert result["sent"] == ["metrics", "sns"]
    messages = received(sqs, queue)
    assert len(messages) == 1 and "ALERTS" in messages[0] and "alice@example.com" in messages[0]
    metrics = boto3.client("cloudwatch", region_name="us-east-1").list_metrics(Namespace="Pennyworth")["Metrics"]
    assert {m["MetricName"] for m in metrics} == {"CostUSD", "Requests", "InputTokens", "OutputTokens"}

    # WHEN it runs again for the same day THEN nothing is sent twice
    again = reports.run(DAY)
    assert again["status"] == "already done" and again["sent"] == []
    assert received(sqs, queue) == []
    assert reports.stored(DAY)["steps"].keys() == {"metrics", "sns"}


def test_the_report_groups_by_team_and_its_budget_alerts_name_the_team_and_its_admins(
    usage_table, keys_table, inbox
) -> None:
    # GIVEN two teams' keys (one the team's own, one a member's charged to it), a key of no team, a team budget
    topic, sqs, queue = inbox
    store = KeyStore(keys_table)
    team_key, _ = store.create(owner_sub=scopes.team_owner("t1"), team_id="t1", name="ci")
    member_key, _ = store.create(owner_sub="alice", owner_email="alice@example.com", team_id="t1")
    other, _ = store.create(owner_sub="bob", team_id="t2")
    loner, _ = store.create(owner_sub="carol")
    Meter(Ledger(usage_table)).set_budget(scopes.team("t1"), Decimal("0.02"), actor="admin")
    cost_t1 = spend(usage_table, team_key, DAY, 5, 1000) + spend(usage_table, member_key, DAY, 4, 1000)
    cost_t2 = spend(usage_table, other, DAY, 1, 1000)
    spend(usage_table, loner, DAY, 1, 1000)
    names = {"t1": TeamInfo("Platform", ("lead@example.com", "second@example.com")), "t2": TeamInfo("Data")}
    reports = service(usage_table, keys_table, topic, teams=lambda ids: {i: names[i] for i in ids if i in names})
    # WHEN the day is reported
    report = reports.run(DAY)["report"]
    # THEN it has a row per team, named, and the team's own key is no person's
    assert [(t["id"], t["name"], Decimal(t["cost_usd"])) for t in report["by_team"]] == [
        ("t1", "Platform", cost_t1), ("t2", "Data", cost_t2),
    ]  # fmt: skip
    assert scopes.team_owner("t1") not in [o["id"] for o in report["by_owner"]]
    # AND the team's budget alert names the team and its admins
    [alert] = [a for a in report["alerts"] if a["kind"] == "budget"]
    assert alert["team"] == "t1"
    assert alert["message"].startswith("team Platform (t1) has used 135% of its $0.02 budget")
    assert "Team admins: lead@example.com, second@example.com." in alert["message"]
    text = received(sqs, queue)[0]
    assert "By team:" in text and "Platform (t1)  $" in text and "lead@example.com" in text
    # AND CloudWatch gets the cost per team, as a Team dimension
    metrics = boto3.client("cloudwatch", region_name="us-east-1").list_metrics(
        Namespace="Pennyworth", MetricName="CostUSD", Dimensions=[{"Name": "Team"}]
    )["Metrics"]
    assert sorted(m["Dimensions"][0]["Value"] for m in metrics) == ["t1", "t2"]


def test_budget_alerts_are_for_the_month_in_progress_on_the_first_of_the_month(usage_table, keys_table, inbox) -> None:
    # GIVEN a key over its budget in November, and the report of November 30 run on December 1
    topic, _, _ = inbox
    key, _ = KeyStore(keys_table).create(owner_sub="erin", monthly_budget_usd=Decimal("0.002"))
    spend(usage_table, key, date(2026, 11, 30), 3, 1000)
    reports = service(usage_table, keys_table, topic, now=datetime(2026, 12, 1, 6, 0, tzinfo=UTC))
    alerts = [a for a in reports.build(date(2026, 11, 30))["alerts"] if a["kind"] == "budget"]
    # THEN no alert about November's budget (it is over): December's spend is $0
    assert alerts == []
    # AND once December has spend, the alert is about December
    spend(usage_table, key, date(2026, 12, 1), 2, 1000)
    alerts = [a["message"] for a in reports.build(date(2026, 11, 30))["alerts"] if a["kind"] == "budget"]
    assert alerts == [f"key pw-{key.key_id} has used 300% of its $0.002 budget for 2026-12 ($0.006)."]


def test_a_forced_rerun_sends_a_correction_and_metrics_sum_to_the_new_value(usage_table, keys_table, inbox) -> None:
    topic, sqs, queue = inbox
    key, _ = KeyStore(keys_table).create(owner_sub="frank")
    first_cost = spend(usage_table, key, DAY, 2, 1000)
    reports = service(usage_table, keys_table, topic)
    assert reports.run(DAY)["revision"] == 1
    received(sqs, queue)
    # GIVEN usage replayed late into the reported day (reconcile), WHEN the day is re-run with force
    other, _ = KeyStore(keys_table).create(owner_sub="frank")
    late = spend(usage_table, other, DAY, 1, 500)
    assert reports.run(DAY)["sent"] == []  # without force: nothing again
    corrected = reports.run(DAY, force=True)
    # THEN revision 2 went out, marked as a correction, with the new total
    assert corrected["revision"] == 2 and corrected["sent"] == ["metrics", "sns"]
    assert Decimal(corrected["report"]["total"]["cost_usd"]) == first_cost + late
    [message] = received(sqs, queue)
    assert "corrected (revision 2)" in message
    # AND CloudWatch's Sum for the day is the corrected value, not both revisions added up
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    stats = cloudwatch.get_metric_statistics(
        Namespace="Pennyworth",
        MetricName="Requests",
        Dimensions=[{"Name": "Model", "Value": "nova-micro"}],
        StartTime=datetime(2026, 11, 25, tzinfo=UTC),
        EndTime=datetime(2026, 11, 26, tzinfo=UTC),
        Period=86400,
        Statistics=["Sum"],
    )["Datapoints"]
    assert [point["Sum"] for point in stats] == [3.0]
    assert reports.stored(DAY)["revision"] == 2 and reports.run(DAY)["sent"] == []


def test_a_forced_rerun_waits_for_a_run_in_progress(usage_table, keys_table, inbox) -> None:
    topic, _, _ = inbox
    reports = service(usage_table, keys_table, topic)
    usage_table.put_item(
        Item={
            "pk": f"REPORT#{DAY}",
            "sk": "DAILY",
            "status": "running",
            "revision": 1,
            "report": "{}",
            "lease_until": "2026-11-26T06:05:00Z",
            "steps": {},
        }
    )
    with pytest.raises(errors.Conflict):
        reports.run(DAY, force=True)


def test_capped_bills_are_flagged_in_the_report(usage_table, keys_table, inbox) -> None:
    topic, _, _ = inbox
    usage_table.put_item(
        Item={
            "pk": "AGG#ALL",
            "sk": f"DAY#{DAY}",
            "gsi1pk": f"DAY#{DAY}",
            "gsi1sk": "ALL",
            "type": "aggregate",
            "requests": 3,
            "cost": Decimal("0.3"),
            "capped_requests": 1,
            "capped_usd": Decimal("0.125"),
        }
    )
    messages = [a["message"] for a in service(usage_table, keys_table, topic).build(DAY)["alerts"]]
    assert any("1 request(s) used more than admission reserved" in m and "$0.125" in m for m in messages)


def test_absolute_threshold_and_owner_budget(usage_table, keys_table, inbox) -> None:
    topic, _, _ = inbox
    key, _ = KeyStore(keys_table).create(owner_sub="carol", owner_email="c@example.com")
    Meter(Ledger(usage_table)).set_owner_budget("carol", Decimal("0.01"), actor="admin")
    spend(usage_table, key, DAY, 4, 1000)  # $0.012: over the owner's $0.01
    report = service(usage_table, keys_table, topic, threshold=Decimal("0.01")).build(DAY)
    messages = [a["message"] for a in report["alerts"]]
    assert any("daily threshold" in m for m in messages)
    assert any(m.startswith("owner carol has used 120%") for m in messages)


def test_slack_post_uses_the_ssm_webhook(usage_table, keys_table, inbox) -> None:
    topic, _, _ = inbox
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/pennyworth/slack", Value="https://hooks.slack.example/T/B/x", Type="SecureString"
    )
    posts: list = []
    result = service(usage_table, keys_table, topic, slack="/pennyworth/slack", posts=posts).run(DAY)
    assert result["sent"] == ["metrics", "sns", "slack"]
    assert posts[0][0] == "https://hooks.slack.example/T/B/x" and "daily cost report" in posts[0][1]["text"]


HOSTILE_NAME = "<!channel> <https://evil.example|session expired> & more"


def test_slack_and_email_show_names_as_text(usage_table, keys_table, inbox) -> None:
    # GIVEN a key named with Slack markup, over its budget, whose owner's e-mail (stored before
    # names were checked) forges a line of the report and carries a terminal escape
    topic, sqs, queue = inbox
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/pennyworth/slack", Value="https://hooks.slack.example/T/B/x", Type="SecureString"
    )
    forged = "mallory@example.com\nTotal: $0 over 0 requests\x1b[2J"
    key, _ = KeyStore(keys_table).create(
        owner_sub="mallory", owner_email=forged, name=HOSTILE_NAME, monthly_budget_usd=Decimal("0.001")
    )
    spend(usage_table, key, DAY, 2, 1000)
    posts: list = []
    service(usage_table, keys_table, topic, slack="/pennyworth/slack", posts=posts).run(DAY)
    # THEN Slack gets no control sequence, no link and no mention: the name shows as written
    slack = posts[0][1]
    assert "<" not in slack["text"] and ">" not in slack["text"]
    assert f"({HOSTILE_NAME.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')})" in slack["text"]
    assert slack["mrkdwn"] is False
    # AND the e-mail (and Slack) show the forged line and the escape as escapes, on the owner's line
    [email] = received(sqs, queue)
    for text in (email, slack["text"]):
        assert "\x1b" not in text and "\nTotal: $0 over 0 requests" not in text
        assert "mallory@example.com\\x0aTotal: $0 over 0 requests\\x1b[2J" in text
    assert f"({HOSTILE_NAME})" in email  # plain text: nothing to escape


def test_an_empty_day_still_reports_zero(usage_table, keys_table, inbox) -> None:
    topic, sqs, queue = inbox
    result = service(usage_table, keys_table, topic).run(DAY)
    assert result["report"]["total"]["cost_usd"] == "0" and result["report"]["alerts"] == []
    assert "Total: $0 over 0 requests" in received(sqs, queue)[0]


def test_day_parsing() -> None:
    today = date(2026, 11, 26)
    assert parse_day(None, today=today) == DAY
    assert parse_day("2026-11-01", today=today) == date(2026, 11, 1)
    # 0001-01-01 once reached the trailing week's arithmetic and overflowed (a 500); the others are
    # shapes date.fromisoformat reads but nobody means (basic format, ISO week, full-width digits).
    for bad in (
        "",  # an empty day is no day (absent or null is yesterday)
        "yesterday",
        "2026-11-26",
        "2026-12-01",
        "0001-01-01",
        "2019-12-31",
        "20261101",
        "2026-W44-1",
        "\uff12\uff10\uff12\uff16-11-01",
        "2026-02-30",
        20261101,
    ):
        with pytest.raises(errors.InvalidRequest):
            parse_day(bad, today=today)


def test_render_text_lists_alerts_first() -> None:
    text = render_text(
        {
            "day": "2026-11-25",
            "total": {"cost_usd": "1.5", "requests": 3, "input_tokens": 1, "output_tokens": 2},
            "trailing_7_day_mean_usd": "0.1",
            "alerts": [{"kind": "spike", "message": "big"}],
            "by_owner": [],
            "by_key": [],
            "by_model": [{"id": "nova-micro", "cost_usd": "1.5", "requests": 3}],
        }
    )
    assert text.index("SPIKE: big") < text.index("By model")


def test_the_scheduled_lambda_reports_yesterday(usage_table, keys_table, inbox, monkeypatch) -> None:
    from chalice.test import Client

    from app import app
    from chalicelib import wiring

    topic, sqs, queue = inbox
    monkeypatch.setenv("PENNYWORTH_REPORT_TOPIC_ARN", topic)
    wiring.reset()
    key, _ = KeyStore(keys_table).create(owner_sub="dave")
    yesterday = datetime.now(UTC).date().fromordinal(datetime.now(UTC).date().toordinal() - 1)
    cost = spend(usage_table, key, yesterday, 3, 100)
    with Client(app, stage_name="local") as client:
        event = client.events.generate_cw_event(
            source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]
        )
        result = client.lambda_.invoke("daily_cost_report", event).payload
        again = client.lambda_.invoke("daily_cost_report", event).payload
    assert result["day"] == yesterday.isoformat() and Decimal(result["report"]["total"]["cost_usd"]) == cost
    assert again["sent"] == []
    assert len(received(sqs, queue)) == 1


class StrictCloudWatch:
    """CloudWatch as AWS is: PutMetricData refuses datums stamped more than two weeks back (moto takes them)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.datums: list[dict] = []

    def put_metric_data(self, *, Namespace: str, MetricData: list[dict]) -> dict:  # noqa: N803 - boto3's names
        from botocore.exceptions import ClientError

        for datum in MetricData:
            if datum["Timestamp"] < self.now - timedelta(weeks=2):
                raise ClientError(
                    {"Error": {"Code": "InvalidParameterValue", "Message": "no more than two weeks in the past"}},
                    "PutMetricData",
                )
        self.datums += MetricData
        return {}


def test_a_correction_older_than_cloudwatch_keeps_is_still_sent(usage_table, keys_table, inbox) -> None:
    # GIVEN a day 30 days back whose usage was reconciled late, and CloudWatch's two-week limit
    topic, sqs, queue = inbox
    now = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    old_day = date(2026, 10, 27)
    key, _ = KeyStore(keys_table).create(owner_sub="o1")
    spend(usage_table, key, old_day, 2, 1000)
    reports = service(usage_table, keys_table, topic, now=now)
    cloudwatch = StrictCloudWatch(now)
    reports._cloudwatch = cloudwatch
    # WHEN an admin runs (then force-corrects) that day's report
    first = reports.run(old_day)
    again = reports.run(old_day, force=True)
    # THEN the e-mail goes out each time; the metrics CloudWatch cannot take are skipped, not a 500
    assert first["sent"] == ["sns"] and again["sent"] == ["sns"] and again["revision"] == 2
    assert cloudwatch.datums == []
    assert len(received(sqs, queue)) == 2
    # AND a recent day still publishes its metrics
    assert "metrics" in reports.run(date(2026, 11, 20))["sent"] and cloudwatch.datums

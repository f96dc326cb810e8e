"""The aggregator's local equivalent: moto's DynamoDB stream → the real aggregator, without Lambda.

On AWS, a Lambda event source mapping reads the usage table's stream and
invokes ``ledger_aggregator`` (app.py). moto has no event source mappings for
streams, so locally this polls the stream through the ordinary DynamoDB
Streams API (``DescribeStream``, ``GetShardIterator``, ``GetRecords``) and
hands each batch to the same ``Aggregator.handle`` Lambda calls, in the same
event shape (``Records`` plus ``shardId``).

* ``make dev`` runs it as a fourth process (``python -m local.stream_aggregator``),
  polling every ``--interval`` seconds (0.25 by default): usage reports trail
  billing by about that much. An idle poll is one ``GetRecords`` (read on from the
  last one's ``NextShardIterator``), which moto's state saver knows to be a read.
* Tests call ``drain(table)`` to apply everything written so far. In-process
  (moto's ``mock_aws``), the records are read from moto's shard directly, in
  the shape ``GetRecords`` returns them: the Lambda artifact's pruned botocore,
  which ``make test-artifact`` runs the tests with, has no Streams API.

Where it starts reading does not matter: the aggregator's per-shard marker
skips what was applied before, so a restart reads from the stream's start
(``TRIM_HORIZON``) and applies nothing twice.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Any

from chalicelib.accounting.aggregator import Aggregator
from chalicelib.shared.dynamodb import install_number_normalizer

BATCH = 1000


class StreamDrain:
    """Reads one table's stream from where it left off and applies it."""

    def __init__(self, table: Any, *, streams_client: Any | None = None, aggregator: Aggregator | None = None) -> None:
        self._table = table
        self._in_process = streams_client is None and in_process(table)
        self._streams = None if self._in_process else streams_client or streams_client_for(table)
        self._aggregator = aggregator or Aggregator(table)
        self._after: dict[str, str] = {}  # shard id → last sequence number read
        # What an idle poll needs no call for: the stream, its shards, and where each shard's next
        # read starts (GetRecords's NextShardIterator). One GetRecords per shard per poll, then.
        self._arn: str | None = None
        self._shards: list[str] = []
        self._next: dict[str, str] = {}  # shard id → iterator to read on from

    def drain(self) -> int:
        """Apply every record in the stream now; returns how many records were read."""
        if self._in_process:
            shard_id, records = shard_records(self._table)
            after = int(self._after.get(shard_id, 0))
            records = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) > after]
            for start in range(0, len(records), BATCH):
                page = records[start : start + BATCH]
                self._aggregator.handle({"Records": page, "shardId": shard_id})
                self._after[shard_id] = page[-1]["dynamodb"]["SequenceNumber"]
            return len(records)
        try:
            return self._drain_stream()
        except Exception:
            # Look the stream up again next time, and read on from the last record applied.
            self._arn, self._shards = None, []
            self._next.clear()
            raise

    def _drain_stream(self) -> int:
        if self._arn is None:
            table = self._table.meta.client.describe_table(TableName=self._table.name)["Table"]
            self._arn = table.get("LatestStreamArn")
            if not self._arn:
                return 0
            description = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"]
            self._shards = [shard["ShardId"] for shard in description.get("Shards", [])]
        arn = self._arn
        read = 0
        for shard_id in self._shards:
            iterator = self._next.pop(shard_id, None)
            if iterator is None:
                if shard_id in self._after:
                    start = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self._after[shard_id]}
                else:
                    start = {"ShardIteratorType": "TRIM_HORIZON"}
                iterator = self._streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, **start)["ShardIterator"]
            while iterator:
                page = self._streams.get_records(ShardIterator=iterator, Limit=BATCH)
                records = page.get("Records", [])
                iterator = page.get("NextShardIterator")
                if not records:
                    if iterator:
                        self._next[shard_id] = iterator
                    break
                self._aggregator.handle({"Records": records, "shardId": shard_id, "eventSourceARN": arn})
                self._after[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
                read += len(records)
        return read

    def run(self, interval: float, stop: threading.Event) -> None:
        """Drain every ``interval`` seconds until ``stop`` is set, then once more; failures are logged and retried.

        The last pass applies what was billed while the stack stopped (``make dev`` stops the API
        first, then this, then moto), so no reservation is left held in the saved state.
        """
        while True:
            stopping = stop.is_set()
            try:
                self.drain()
            except Exception as exc:  # noqa: BLE001 - keep the local stack alive; the next pass retries
                print(f"stream aggregator: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            if stopping:
                return
            stop.wait(interval)


def in_process(table: Any) -> bool:
    """True when ``table`` is served by moto in this process (``mock_aws``), not by a server."""
    return "amazonaws.com" in table.meta.client.meta.endpoint_url


def shard_records(table: Any) -> tuple[str, list[dict[str, Any]]]:
    """In-process moto: the table's shard id and its records, as ``GetRecords`` returns them."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    region = table.meta.client.meta.region_name
    shard = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].get_table(table.name).stream_shard
    return shard.id, [record.to_json() for record in shard.items]


def streams_client_for(table: Any) -> Any:
    """A DynamoDB Streams client on the same endpoint, region and credentials as ``table``'s client."""
    import boto3
    from botocore.config import Config

    client = table.meta.client
    credentials = client._request_signer._credentials  # the same identity as the table's client
    return boto3.client(
        "dynamodbstreams",
        region_name=client.meta.region_name,
        endpoint_url=client.meta.endpoint_url if "amazonaws.com" not in client.meta.endpoint_url else None,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
        # moto routes DescribeStream by the stream's ARN only on the regional endpoint.
        config=Config(account_id_endpoint_mode="disabled"),
    )


_DRAINS: dict[tuple[str, str], StreamDrain] = {}


def drain(table: Any) -> int:
    """Apply everything written to ``table`` so far (tests): one ``StreamDrain`` per table and endpoint."""
    key = (table.meta.client.meta.endpoint_url, table.name)
    current = _DRAINS.get(key)
    if current is None or current._table is not table:
        current = _DRAINS[key] = StreamDrain(table)
    return current.drain()


def main(argv: list[str] | None = None) -> int:
    import boto3

    parser = argparse.ArgumentParser(description="Apply the usage table's stream to its aggregates (make dev).")
    parser.add_argument("--endpoint", required=True, help="moto server URL")
    parser.add_argument("--table", required=True, help="usage table name")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between polls")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Credentials come from the environment (the dev stack sets moto's "testing" ones).
    resource = boto3.resource("dynamodb", region_name=args.region, endpoint_url=args.endpoint)
    install_number_normalizer(resource.meta.client)
    with contextlib.suppress(KeyboardInterrupt):
        StreamDrain(resource.Table(args.table)).run(args.interval, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Structured JSON logging (Powertools Logger), shared by every module.

One logger for the service; modules log through it so each line is one JSON
object with the request's correlation keys. Never log a key, a token or a
prompt: ``tests/test_security.py`` scans captured logs for plaintext keys.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

logger = Logger(service="pennyworth")

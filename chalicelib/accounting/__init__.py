"""Money: the exact ledger (``ledger``), budgets and rate limits (``metering``), the daily report (``reports``)."""

"""The people sweep's local equivalent: ``make dev`` runs it every 30 seconds.

On AWS the ``people_sweep`` function (app.py) runs every 5 minutes on an EventBridge schedule;
moto has no scheduler, so this loop calls the same ``PeopleService.sweep`` with the stack's
environment (set by ``local/devstack.py``): people created, disabled or deleted with ``aws
cognito-idp`` against the local pool are entered or off-boarded within the interval.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the people sweep periodically (make dev).")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between sweeps")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    from chalicelib import wiring
    from chalicelib.observability import logger

    with contextlib.suppress(KeyboardInterrupt):
        while not stop.is_set():
            try:
                wiring.people_service().sweep()
            except Exception:  # noqa: BLE001 - the next sweep tries again, as the schedule would
                logger.exception("people sweep failed; retrying at the next interval")
            stop.wait(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the one bounded JSON parser costs over a bare ``json.loads``, on request bodies of four shapes.

``chalicelib/shared/body.py: parse_json`` decodes, then walks the value once (depth, surrogates,
number range). Both are timed in the same run, alternating, on the same bytes.

Usage: ``python bench/json_parse.py [--rounds N]``; prints JSON (milliseconds, median).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chalicelib.shared.body import parse_json  # noqa: E402

BODIES = {
    "typical chat (9 KB)": {
        "model": "nova-micro",
        "messages": [{"role": "user", "content": "How are you? " * 30}] * 20,
    },
    "long text (1.6 MB)": {
        "model": "nova-micro",
        "messages": [{"role": "user", "content": "héllo wörld " * 5000}] * 15,
    },
    "100,000 token ids": {"model": "titan-embed-text-v2", "input": [list(range(2000))] * 50},
    "44,000 small objects": {
        "model": "nova-micro",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}] * 20}] * 2000,
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    results = {}
    for name, body in BODIES.items():
        raw = json.dumps(body, ensure_ascii=False).encode()
        plain, checked = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            json.loads(raw)
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            parse_json(raw)
            checked.append(time.perf_counter() - started)
        results[name] = {
            "bytes": len(raw),
            "json_loads_ms": round(statistics.median(plain) * 1000, 3),
            "parse_json_ms": round(statistics.median(checked) * 1000, 3),
            "ratio": round(statistics.median(checked) / statistics.median(plain), 2),
        }
    print(json.dumps({"rounds": args.rounds, "bodies": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

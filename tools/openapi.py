"""Write docs/openapi.json from chalicelib/edge/openapi.py (tests/test_openapi.py checks it is current).

Usage: ``python -m tools.openapi``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from chalicelib.edge.openapi import document

TARGET = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(TARGET.parent.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

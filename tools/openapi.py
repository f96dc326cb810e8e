"""Write docs/openapi.json from the route table (chalicelib/edge/routes.py; tests/test_openapi.py checks it).

Usage: ``python -m tools.openapi``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from chalicelib.edge.routes import openapi_document

TARGET = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def render() -> str:
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(TARGET.parent.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

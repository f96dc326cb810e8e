"""``chalice deploy``, with the methods Chalice cannot describe added to the API it creates.

Run by ``tools/deploy.py``: ``python -m tools.chalice_deploy <project> <stage>
<extension.json>``, where the extension holds the Swagger ``paths`` to add and the
gateway responses (it imports nothing of ours, so Chalice loads the staged
project's ``app.py`` and ``chalicelib`` only). It is Chalice's own ``deploy`` command (same
planner, same API calls, same ``.chalice/deployed/<stage>.json``) with one
class replaced: the Swagger generator also writes the streaming methods
(``tools/package.py: stream_methods``, pointing at the streaming function
``tools/deploy.py`` created first) and the gateway responses
(``tools/stack.py: gateway_responses``). So the REST API is replaced once per
deploy, whole, as Chalice does, and the model routes never go missing between
two calls. A plain ``chalice deploy`` would drop them: use ``make chalice-deploy``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    project, stage, extension_file = argv
    extension = json.loads(Path(extension_file).read_text())

    from chalice.cli import main as chalice_main
    from chalice.deploy import deployer, swagger

    class StreamingSwaggerGenerator(swagger.TemplatedSwaggerGenerator):
        def generate_swagger(self, app: Any, rest_api: Any = None) -> dict[str, Any]:
            api = super().generate_swagger(app, rest_api)
            for path, methods in extension["paths"].items():
                api["paths"].setdefault(path, {}).update(methods)
            api["x-amazon-apigateway-gateway-responses"] = extension["gateway_responses"]
            return api

    deployer.TemplatedSwaggerGenerator = StreamingSwaggerGenerator
    sys.argv = ["chalice", "--project-dir", project, "deploy", "--stage", stage]
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

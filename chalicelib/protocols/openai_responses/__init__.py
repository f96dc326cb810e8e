"""OpenAI's Responses API (``POST /v1/responses``) as a thin adapter over the core.

``request`` parses a ``CreateResponse`` body into the one internal
``Conversation`` (every parameter has a policy: ``RESPONSES_PARAMETERS``),
with ``items`` translating ``input`` and ``tools`` the tool kinds Bedrock can
run; ``render`` turns the core's events into the Responses stream events and
the ``Response`` object; ``route`` is the route itself. Stateless: nothing is
stored, so clients resend the conversation in ``input`` (Codex does).
"""

from chalicelib.protocols.openai_responses.request import (
    CLIENT_EXTENSIONS,
    RESPONSES_PARAMETERS,
    ResponsesRequest,
    parse_responses_request,
)
from chalicelib.protocols.openai_responses.route import Responses

__all__ = [
    "CLIENT_EXTENSIONS",
    "RESPONSES_PARAMETERS",
    "Responses",
    "ResponsesRequest",
    "parse_responses_request",
]

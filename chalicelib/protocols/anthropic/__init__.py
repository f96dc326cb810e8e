"""Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``): a thin adapter over the core.

``parse`` turns a request body into the core's ``Conversation`` (every parameter
has a policy: ``MESSAGES_PARAMETERS``; ``messages`` translates the messages and
their content blocks), ``render`` turns the core's events into
Anthropic's ``message`` object, server-sent events and error envelope, and
``adapter`` is the route: authenticate, parse, converse, render.
"""

from chalicelib.protocols.anthropic.adapter import Messages, for_anthropic_clients
from chalicelib.protocols.anthropic.parse import COUNT_TOKENS_PARAMETERS, MESSAGES_PARAMETERS
from chalicelib.protocols.anthropic.render import error_body

__all__ = ["COUNT_TOKENS_PARAMETERS", "MESSAGES_PARAMETERS", "Messages", "error_body", "for_anthropic_clients"]

"""Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``): a thin adapter over the model service.

``parse`` turns a request (its headers and body) into the one internal ``Conversation``
(every parameter has a policy: ``MESSAGES_PARAMETERS``), with ``messages`` translating the
messages and their content blocks in one call and ``values`` the small values both check;
``render`` turns the turn's events into Anthropic's ``message`` object, server-sent events
and error envelope; ``route`` holds the routes (``Messages.handle``, ``CountTokens.handle``).
"""

"""OpenAI's Responses API (``POST /v1/responses``): a thin adapter over the model service.

``parse`` turns a ``CreateResponse`` body into the one internal ``Conversation`` (every
parameter has a policy: ``RESPONSES_PARAMETERS``), with ``items`` translating ``input`` and
``tools`` the tool kinds Bedrock can run; ``render`` turns the turn's events into the
Responses stream events and the ``Response`` object; ``route`` is the route
(``Responses.handle``). Stateless: nothing is stored, so clients resend the conversation in
``input`` (Codex does).
"""

"""OpenAI's chat completions (``POST /v1/chat/completions``): a thin adapter over the model service.

``parse`` validates a body into the one internal ``Conversation`` (every parameter has a
policy: ``CHAT_PARAMETERS``), ``render`` writes the turn back as a ``chat.completion`` or its
chunks, ``route`` is the route (``ChatCompletions.handle``).
"""

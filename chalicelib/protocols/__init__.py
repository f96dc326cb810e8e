"""The protocol adapters: a wire format in, the one internal ``Conversation`` out; its turn back.

Every adapter is a package of the same shape: ``parse`` (the request → ``Conversation`` or
``EmbeddingRequest``, every parameter with a policy), ``render`` (the answer → the wire
format) and ``route`` (the routes, each a class whose one entry verb is
``handle(request)``), plus helpers of its own where a format is large. ``route.py`` here is
the step they share (authenticate, parse the body, converse, answer); ``params.py`` what the
OpenAI-shaped parsers share. Adapters reach the model service and the key store, never the
gateway, accounting, the admin API or the edge (tests/test_architecture.py).
"""

"""The model domain's vocabulary: the one internal request and the one stream of events answering it.

``request`` holds ``Conversation`` (and ``EmbeddingRequest``), what every protocol adapter
parses its wire format into; ``events`` the events an answer is made of (and ``Completion``,
their accumulation); ``deadline`` the guard that keeps a stream of them inside its time.
Above ``shared``, below everything that calls a model (``gateway``, ``service``, the adapters).
"""

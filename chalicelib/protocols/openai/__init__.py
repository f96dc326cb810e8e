"""OpenAI's buffered routes (``/v1/models``, ``/v1/key``, ``/v1/embeddings``): a thin adapter over the model service.

``parse`` validates an embeddings body into an ``EmbeddingRequest`` (every parameter has a
policy: ``EMBEDDING_PARAMETERS``), ``render`` writes catalog models as OpenAI's objects,
``route`` holds the routes (``ListModels``, ``GetModel``, ``KeyStatus``, ``Embeddings``: ``handle``).
"""

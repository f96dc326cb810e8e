"""The billed model call, once for every protocol: ``ModelService`` (resolve → check → admit → call → bill).

Above the folders it orchestrates (``catalog``, ``keys``, ``accounting``, ``gateway``), below
the protocol adapters that hand it a ``Conversation`` and render its ``Turn``.
"""

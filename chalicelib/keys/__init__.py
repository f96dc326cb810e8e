"""API keys: the hashed key store (``store``) and the append-only audit log (``audit``)."""

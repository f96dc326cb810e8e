"""The priced model catalog (``catalog`` reads ``catalog.json`` and LiteLLM's bundled price map)."""

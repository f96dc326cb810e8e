"""Thin protocol adapters over the core: OpenAI (chat, embeddings, models), MCP."""

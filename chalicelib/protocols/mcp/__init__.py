"""MCP over Streamable HTTP (``/mcp``), stateless: a thin adapter over the model service.

``parse`` reads the JSON-RPC body, the protocol version and each tool's arguments (against
``INPUT_SCHEMAS``); ``render`` writes JSON-RPC answers, tool results and the tool list
(``TOOLS``); ``route`` is the endpoint (``McpServer.handle``) and its tools.
"""

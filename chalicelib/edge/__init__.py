"""The edge: the one table of routes every entry point reads, and the one error translation.

``routes`` is the table (``ROUTES``: where each route is, who may call it, what serves it, how
it is described; ``endpoint`` its row); ``answers`` calls a route and turns whatever it raises
into the route protocol's error envelope; ``openapi`` (with ``schemas``) describes the table as
an OpenAPI 3.1 document. The Chalice app (``app.py``) and the streaming function
(``streaming/handler.py``) are its two readers at run time; ``tools/package.py`` and the local
front read ``STREAM_PATHS``.
"""

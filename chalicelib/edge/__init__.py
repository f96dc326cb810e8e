"""The edge: how requests reach chalicelib, and how its answers and errors leave.

``openapi`` describes every route as an OpenAPI 3.1 document.
"""

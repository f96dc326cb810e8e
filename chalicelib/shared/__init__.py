"""The ground layer: vocabulary every other folder of chalicelib uses, importing nothing above it.

``body`` (the one JSON body parser), ``dates`` (days as callers write them, and the stored
time format), ``dynamodb`` (clients, numbers, calls with a deadline), ``text`` (labels people
read), ``money`` and ``usage`` (exact USD, token counts, the bill of a call), ``http``
(framework-neutral answers) and ``fields`` (refusing fields nobody asked for). Only
``settings``, ``errors`` and ``observability`` sit below it (tests/test_architecture.py).
"""

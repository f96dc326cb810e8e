"""The streaming entry point: API Gateway (response transfer mode STREAM) → the streamed routes.

``handler.handle`` turns an API Gateway proxy event into a ``StreamingResult`` (the
route table and the error translation are the edge's, ``chalicelib/edge``); ``runtime``
is our loop over the Lambda Runtime API in its streaming response mode (the managed
Python runtime cannot stream). Nothing here knows whether it runs on Lambda or
behind the local front that ``make dev`` starts.
"""

"""Gunicorn settings read from the repository root (``make serve``, tests/live.py, benchmarks).

Only protocol limits live here; workers and threads stay on the command line of each caller.
Gunicorn refuses requests past these limits itself, with a plain-text 400. The app's own
limits (``portal/requestguard.py``) sit below them and answer in the caller's shape: a URL
over 4,096 bytes is a 414, and on ``/api/`` paths more than 64 headers or one over 4,096
bytes is a 431, in the JSON error shape. Only requests beyond gunicorn's hard maxima below
(a request line over 8,190 bytes, a header line over 8,190 bytes, more than 100 headers)
get gunicorn's plain-text answer.
"""

limit_request_line = 8190  # gunicorn's maximum; the app answers 414 above 4,096
limit_request_fields = 100  # the app answers 431 above 64 on /api/ paths
limit_request_field_size = 8190  # the app answers 431 above 4,096 on /api/ paths

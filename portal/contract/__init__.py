"""One contract for the JSON APIs: declared fields that validate input and document it.

``fields.py`` declares what a body or query may hold (type, required, bounds, places, length,
pattern, enum, description); the same declaration parses a request (``Body.parse``) and
becomes its JSON Schema in the OpenAPI document (``Body.json_schema``). ``jsonbody.py`` reads
the raw body with every number bounded before conversion.

Why our own ~400 lines rather than flask-smorest/marshmallow: the deduct hot path. Parsing
and validating a full deduct body (feature, quantity, department, user, metadata) costs
19.9 µs here (11.1 µs for ``{"feature_key": …}`` alone; ``timeit``, best of 3 × 100,000, on
this project's 2-core machine), about 1% of the 2.2 ms of server CPU a deduct takes. A
marshmallow schema builds nested field objects, error dicts and a post-load object per
request, typically several times that, and its number fields convert before they bound
(``Decimal("1e1000000")`` would still reach ``int``). What we need is small and exact:
Decimal-only amounts with at most 6 places, unknown fields as errors naming the field, and
schemas that say exactly what the parser refuses, so schemathesis finds no gap between them.
"""

"""One contract for the JSON APIs: declared fields that validate input and document it."""

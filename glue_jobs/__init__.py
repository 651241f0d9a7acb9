"""Glue job entry scripts: parse arguments, call the core (`ltv`), write results. See `_common`."""

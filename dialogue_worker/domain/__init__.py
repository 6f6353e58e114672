"""Pure rules of the worker: validation, membership and paging. No I/O here."""

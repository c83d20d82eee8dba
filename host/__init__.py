"""flowskid host: the coordinator and the `skid` CLI (CPython only)."""

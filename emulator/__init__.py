"""flowskid plant emulator (CPython only): physics and fault injection for dry runs."""

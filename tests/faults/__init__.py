"""Fault tests: the real database and broker behind a TCP proxy that delays, cuts and refuses."""

"""The back office for mall staff: the programme's settings, the ledger (read-only) and the
maker-checker queue for manual adjustments. Shared building blocks are in `base`."""

from coalition.admin import adjustments, ledger, programme

__all__ = ["adjustments", "ledger", "programme"]

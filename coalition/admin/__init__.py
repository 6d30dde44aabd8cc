"""The back office for mall staff: the programme's settings, the ledger (read-only), the
maker-checker queue for manual adjustments and tills' batch files. Shared building blocks are
in `base`."""

from coalition.admin import adjustments, campaigns, ledger, notices, programme, tills

__all__ = ["adjustments", "campaigns", "ledger", "notices", "programme", "tills"]

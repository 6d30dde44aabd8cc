"""The consent and privacy back office: purposes and the consent log, privacy requests (access
and erasure), and the privacy officer's audit trail."""

from consent.admin import audit, privacy, purposes

__all__ = ["audit", "privacy", "purposes"]

"""Members in the back office (`members`), their identifiers and merge records (`records`)."""

from members.admin import members, records

__all__ = ["members", "records"]

"""Fixtures shared by the security tests."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction


class _RolledBackSavepoint:
    """A block in a savepoint that is always rolled back."""

    def __enter__(self) -> None:
        self.atomic = transaction.atomic()
        self.atomic.__enter__()

    def __exit__(self, *exc: Any) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(*exc)


@pytest.fixture
def example_savepoint(db: Any) -> Iterator[type[_RolledBackSavepoint]]:
    """Run a block in a savepoint and roll it back, so that each Hypothesis example starts from
    the same rows: `with example_savepoint(): ...`."""
    yield _RolledBackSavepoint

"""Fixtures for every test: one mall, the personas (staff, tenant A, tenant B), a shopper."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import User

from coalition.models import Coalition
from coalition.selectors import ledger_verify
from coalition.tests.factories import CoalitionFactory
from members.models import Member
from members.tests.factories import MemberFactory
from tenants.models import Till
from tenants.tests.factories import TenantFactory, TillFactory

if TYPE_CHECKING:
    from tests.till_api import TillClient


@pytest.fixture
def coalition(db: Any) -> Coalition:
    return CoalitionFactory.create(slug="phoenix", name="Phoenix Mall")


@pytest.fixture
def till_a(coalition: Coalition) -> Till:
    """Tenant A: the apparel store of the worked example."""
    tenant = TenantFactory.create(coalition=coalition, slug="apparel", name="Apparel Co")
    return TillFactory.create(tenant=tenant, code="a1")


@pytest.fixture
def till_b(coalition: Coalition) -> Till:
    """Tenant B: the food court of the worked example."""
    tenant = TenantFactory.create(
        coalition=coalition, slug="food-court", name="Food Court", category="food"
    )
    return TillFactory.create(tenant=tenant, code="b1")


@pytest.fixture
def member(coalition: Coalition) -> Member:
    return MemberFactory.create(coalition=coalition)


@pytest.fixture
def staff(db: Any) -> User:
    return User.objects.create_user("staff1", password="x", is_staff=True)


@pytest.fixture
def checker(db: Any) -> User:
    return User.objects.create_user("staff2", password="x", is_staff=True)


@pytest.fixture
def assert_ledger_clean() -> Callable[[Coalition], None]:
    def check(coalition: Coalition) -> None:
        problems = ledger_verify(coalition)
        assert problems == [], "\n".join(map(str, problems))

    return check


@pytest.fixture
def api_a(till_a: Till) -> "TillClient":
    """Tenant A's till speaking the till API with its own key."""
    from tests.till_api import till_client

    return till_client(till_a)


@pytest.fixture
def api_b(till_b: Till) -> "TillClient":
    from tests.till_api import till_client

    return till_client(till_b)

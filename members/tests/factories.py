from typing import Any

import factory

from coalition.tests.factories import CoalitionFactory
from members.models import Member
from members.services import member_enrol


class MemberFactory(factory.django.DjangoModelFactory[Member]):
    class Meta:
        model = Member

    coalition = factory.SubFactory(CoalitionFactory)
    email = factory.Sequence(lambda n: f"shopper{n}@example.com")
    name = factory.Faker("name")

    @classmethod
    def _create(cls, model_class: type[Member], *args: Any, **kwargs: Any) -> Member:
        kwargs.setdefault("consents", {"programme": True})
        kwargs.setdefault("adult", True)
        return member_enrol(**kwargs)

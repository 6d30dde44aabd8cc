from typing import Any

import factory

from coalition.tests.factories import CoalitionFactory
from tenants.models import Tenant, TenantCategory, Till
from tenants.services import tenant_create, till_create


class TenantFactory(factory.django.DjangoModelFactory[Tenant]):
    class Meta:
        model = Tenant

    coalition = factory.SubFactory(CoalitionFactory)
    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.Sequence(lambda n: f"Tenant {n}")
    category = TenantCategory.APPAREL

    @classmethod
    def _create(cls, model_class: type[Tenant], *args: Any, **kwargs: Any) -> Tenant:
        return tenant_create(**kwargs)


class TillFactory(factory.django.DjangoModelFactory[Till]):
    class Meta:
        model = Till

    tenant = factory.SubFactory(TenantFactory)
    code = factory.Sequence(lambda n: f"till-{n}")

    @classmethod
    def _create(cls, model_class: type[Till], *args: Any, **kwargs: Any) -> Till:
        return till_create(
            tenant=kwargs["tenant"],
            store_code=kwargs.get("store_code", "main"),
            till_code=kwargs["code"],
        )

from typing import Any

import factory

from coalition.models import Coalition
from coalition.services import coalition_create


class CoalitionFactory(factory.django.DjangoModelFactory[Coalition]):
    class Meta:
        model = Coalition

    slug = factory.Sequence(lambda n: f"mall-{n}")
    name = factory.Sequence(lambda n: f"Mall {n}")

    @classmethod
    def _create(cls, model_class: type[Coalition], *args: Any, **kwargs: Any) -> Coalition:
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k not in ("slug", "name")}
        coalition = coalition_create(slug=kwargs["slug"], name=kwargs["name"])
        if overrides:
            Coalition.objects.filter(pk=coalition.pk).update(**overrides)
            coalition.refresh_from_db()
        return coalition

"""Model instances from hand-written SQL, for the till API's hot path.

On the till path a Django ORM query costs far more to compile than PostgreSQL takes to run it
(see docs/benchmarks.md), so the handful of reads every earn and burn makes are written once as
SQL here and turned back into ordinary model instances with `Model.from_db`. Column lists come
from the models' own metadata, so a new field cannot be forgotten.
"""

from collections.abc import Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Model

M = TypeVar("M", bound=Model)


@cache
def _attnames(model: type[Model]) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields)


@cache
def select_list(model: type[Model], alias: str) -> str:
    """`alias."col1", alias."col2", ...` for every concrete field of `model`, in order."""
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


def width(model: type[Model]) -> int:
    return len(_attnames(model))


def instance(model: type[M], values: Sequence[Any]) -> M:
    """A saved instance of `model` from the values of `select_list(model, ...)`."""
    return model.from_db(connection.alias, list(_attnames(model)), list(values))


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]

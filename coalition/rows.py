"""Model instances from hand-written SQL, for the till API's hot path.

On the till path a Django ORM query costs far more to compile than PostgreSQL takes to run it
(see docs/benchmarks.md), so the handful of reads every earn and burn makes are written once as
SQL here and turned back into ordinary model instances with `Model.from_db`. Column lists come
from the models' own metadata, so a new field cannot be forgotten.
"""

from collections.abc import Mapping, Sequence
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


def fetch_one(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


def fetch_all(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


@cache
def _insert_fields(model: type[Model]) -> tuple[Any, ...]:
    """The concrete fields an INSERT writes: all but a database-generated primary key."""
    return tuple(
        field
        for field in model._meta.concrete_fields
        if not (field.primary_key and field.get_internal_type() in ("AutoField", "BigAutoField"))
    )


@cache
def insert_into(model: type[Model], expressions: tuple[tuple[str, str], ...] = ()) -> str:
    """`INSERT INTO table ("col", ...) VALUES (%s, ...)` for `insert_values` of an instance.

    `expressions` maps a column to SQL used in place of its plain `%s` (with exactly one `%s`
    of its own, for the field's value), e.g. to clamp a time."""
    fields = _insert_fields(model)
    columns = ", ".join(f'"{field.column}"' for field in fields)
    replace = dict(expressions)
    values = ", ".join(replace.get(field.column, "%s") for field in fields)
    return (
        f'INSERT INTO "{model._meta.db_table}" ({columns}) '  # noqa: S608 (metadata, not input)
        f"VALUES ({values})"
    )


# Field types whose Python value psycopg adapts exactly as the ORM would prepare it, once the
# value is already what the field holds after `Model.__init__` (a Decimal, an aware datetime, a
# UUID, an int or a str). Any other field goes through the ORM's own preparation.
_PLAIN_TYPES = frozenset(
    {
        "BigIntegerField",
        "BooleanField",
        "CharField",
        "DateField",
        "DecimalField",
        "ForeignKey",
        "IntegerField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "SmallIntegerField",
        "TextField",
        "UUIDField",
    }
)


@cache
def _insert_plan(model: type[Model]) -> tuple[tuple[str, Any], ...]:
    """(attname, field if the ORM must prepare its value else None) per inserted column."""
    return tuple(
        (
            field.attname,
            None
            if field.get_internal_type() in _PLAIN_TYPES
            and not getattr(field, "auto_now", False)
            and not getattr(field, "auto_now_add", False)
            else field,
        )
        for field in _insert_fields(model)
    )


@cache
def insert_from(model: type[Model], source: str, column: str, expression: str) -> str:
    """`INSERT INTO table (...) SELECT %s, ..., <expression>, ... FROM <source>`: an INSERT in a
    CTE whose `column` comes from an earlier part of the statement (a new journal's id, say).
    Its parameters are `insert_values(obj, skip=<that column's attname>)`."""
    fields = _insert_fields(model)
    columns = ", ".join(f'"{field.column}"' for field in fields)
    values = ", ".join(expression if field.column == column else "%s" for field in fields)
    return f'INSERT INTO "{model._meta.db_table}" ({columns}) SELECT {values} FROM {source}'  # noqa: S608


def insert_values(obj: Model, skip: str | None = None) -> list[Any]:
    """The parameters of `insert_into(type(obj))`, as the ORM's save would send them (without
    the field whose attname is `skip`, for `insert_from`)."""
    values = []
    for attname, field in _insert_plan(type(obj)):
        if attname == skip:
            continue
        if field is None:
            values.append(getattr(obj, attname))
        else:
            values.append(field.get_db_prep_save(field.pre_save(obj, True), connection))
    return values


def mark_saved(obj: M, pk: Any) -> M:
    """An instance written by `insert_into`: its primary key, and the state of a saved one."""
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj

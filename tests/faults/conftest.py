"""Fixtures for fault tests: the real PostgreSQL behind a fault-injecting proxy."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from tests.faults.proxy import FaultProxy


@pytest.fixture
def db_proxy(transactional_db: Any) -> Iterator[FaultProxy]:
    """Django's `default` connection goes through a `FaultProxy` for the test.

    `connections.databases["default"]` is the very dict the connection object reads when it
    connects, so changing HOST/PORT and closing the connection reroutes the next query. Fault
    tests need committed data (a cut connection rolls back), hence `transactional_db`.
    """
    settings = connections.databases["default"]
    host, port = settings["HOST"], settings["PORT"]
    with FaultProxy(host or "127.0.0.1", int(port or 5432)) as proxy:
        connections["default"].close()
        settings["HOST"], settings["PORT"] = proxy.host, str(proxy.port)
        try:
            yield proxy
        finally:
            proxy.pass_through()
            connections["default"].close()
            settings["HOST"], settings["PORT"] = host, port
    assert proxy.threads_alive() == [], "the proxy left threads running"

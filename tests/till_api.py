"""Helpers for till API tests: a client that carries a till's key and an Idempotency-Key."""

import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.test import Client

from tenants.models import Till
from tenants.services import till_key_issue

PROBLEM = "application/problem+json"


@dataclass
class TillClient:
    """Django's test client speaking as one till. `post` sends a fresh Idempotency-Key unless
    one is given (pass `key=None` to send none)."""

    till: Till
    key: str
    client: Client

    @property
    def auth(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Api-Key {self.key}"}

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        key: str | uuid.UUID | None = ...,  # type: ignore[assignment]
        raw: bytes | str | None = None,
        content_type: str = "application/json",
        **headers: Any,
    ) -> Any:
        extra: dict[str, Any] = dict(self.auth)
        if key is ...:
            key = uuid.uuid4().hex
        if key is not None:
            extra["HTTP_IDEMPOTENCY_KEY"] = str(key)
        data = raw if raw is not None else json.dumps(body)
        return self.client.post(
            f"/api/v1/{path}", data=data, content_type=content_type, **extra, **headers
        )

    def get(self, path: str, **params: Any) -> Any:
        auth: dict[str, Any] = self.auth
        return self.client.get(f"/api/v1/{path}", params, **auth)


def till_client(till: Till) -> TillClient:
    _, raw = till_key_issue(till=till)
    return TillClient(till=till, key=raw, client=Client())


def problem_name(response: Any) -> str:
    """The problem's name: the last segment of its `type` URI."""
    assert response["Content-Type"] == PROBLEM, response.content
    return str(response.json()["type"]).rsplit("/", 1)[-1]

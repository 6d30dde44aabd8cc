"""`/api/v1/`: the till API of `till-api.md`. Paths here are a contract: never rename one."""

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace
from django.urls import path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from coalition.api.batches import BatchCreateView, BatchDetailView
from coalition.api.views import (
    BurnView,
    EarnView,
    ReverseView,
    TransactionDetailView,
    TransactionListView,
)
from members.api.views import EnrolView, LookupView

app_name = "api"

urlpatterns = [
    path("members", EnrolView.as_view(), name="enrol"),
    path("members/lookup", LookupView.as_view(), name="lookup"),
    path("earn", EarnView.as_view(), name="earn"),
    path("burn", BurnView.as_view(), name="burn"),
    path("transactions", TransactionListView.as_view(), name="transactions"),
    path("transactions/<str:transaction_id>", TransactionDetailView.as_view(), name="transaction"),
    path("transactions/<str:transaction_id>/reverse", ReverseView.as_view(), name="reverse"),
    path("batches", BatchCreateView.as_view(), name="batches"),
    path("batches/<str:batch_id>", BatchDetailView.as_view(), name="batch"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    # Redoc writes its styles into <style> elements from its bundle, some before any nonce can
    # reach it, and shows Redocly's logo from their CDN: this page alone, which shows only the
    # published schema and takes no input, allows inline styles and that one image host.
    path(
        "docs",
        csp_replace(
            {
                "style-src": [SELF, UNSAFE_INLINE],
                "img-src": [SELF, "data:", "https://cdn.redoc.ly"],
            }
        )(SpectacularRedocView.as_view(url_name="api:schema")),
        name="docs",
    ),
    # Swagger UI in its Content-Security-Policy-friendly form: the page's script is a file.
    path(
        "docs/swagger",
        SpectacularSwaggerSplitView.as_view(url_name="api:schema"),
        name="docs-swagger",
    ),
]

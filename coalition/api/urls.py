"""`/api/v1/`: the till API of `till-api.md`. Paths here are a contract: never rename one."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

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
    path("docs", SpectacularRedocView.as_view(url_name="api:schema"), name="docs"),
]

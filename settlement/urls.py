"""The tenant portal's statements (namespace `portal`)."""

from django.urls import path

from settlement import views

urlpatterns = [
    path("statements/", views.statements, name="statements"),
    path("statements/<int:statement_id>/", views.statement_detail, name="statement"),
    path("statements/<int:statement_id>/csv/", views.statement_csv_download, name="statement_csv"),
    path("statements/<int:statement_id>/pdf/", views.statement_pdf_download, name="statement_pdf"),
    path(
        "statements/<int:statement_id>/dispute/",
        views.statement_dispute,
        name="statement_dispute",
    ),
]

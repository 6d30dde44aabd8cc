from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views import defaults

from coalition.admin.dashboard import dashboard_view
from coalition.admin.second_factor import SecondFactorLoginForm, second_factor_urls
from coalition.api.problems import api_not_found, api_server_error
from settlement.urls import urlpatterns as settlement_pages
from tenants.urls import urlpatterns as tenant_pages

admin.site.site_header = "Coalition loyalty back office"
admin.site.site_title = "Coalition back office"
admin.site.index_title = "Programme administration"
# The admin's "View site" is not the tenant portal (staff have no portal login): no link.
admin.site.site_url = None
# Username, password and, for staff with an authenticator app, its code (`second_factor`).
admin.site.login_form = SecondFactorLoginForm

API_PREFIX = "/api/"

urlpatterns = [
    # The admin's index is the programme dashboard: this route answers /admin/ (and so
    # "admin:index") first, and renders the admin site's own index with the dashboard in it.
    path("admin/", admin.site.admin_view(dashboard_view), name="dashboard"),
    path("admin/", include(second_factor_urls(admin.site))),
    path("admin/", admin.site.urls),
    path("api/v1/", include("coalition.api.urls")),
    path("portal/", include((tenant_pages + settlement_pages, "portal"))),
]


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Under /api/ even an unknown path answers in problem+json."""
    if request.path.startswith(API_PREFIX):
        return api_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return api_server_error(request)
    return defaults.server_error(request)

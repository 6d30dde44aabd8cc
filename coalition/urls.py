from django.contrib import admin
from django.urls import path

admin.site.site_header = "Coalition loyalty back office"
admin.site.site_title = "Coalition back office"
admin.site.index_title = "Programme administration"
# No public site yet (the tenant portal arrives with settlement): no "View site" link.
admin.site.site_url = None

urlpatterns = [
    path("admin/", admin.site.urls),
]

from django.contrib import admin
from django.urls import path

admin.site.site_header = "Coalition loyalty back office"
admin.site.site_title = "Coalition back office"
admin.site.index_title = "Programme administration"

urlpatterns = [
    path("admin/", admin.site.urls),
]

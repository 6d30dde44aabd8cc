"""The tenant portal's own pages (namespace `portal`, mounted at /portal/ with settlement's)."""

from django.urls import path

from tenants import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.PortalLoginView.as_view(), name="login"),
    path("logout/", views.PortalLogoutView.as_view(), name="logout"),
    path("password/", views.PortalPasswordChangeView.as_view(), name="password_change"),
    path("transactions/", views.transactions, name="transactions"),
    path("shoppers/", views.shoppers, name="shoppers"),
    path("tills/", views.tills, name="tills"),
    path("tills/<int:till_id>/keys/", views.key_issue, name="key_issue"),
    path("keys/<str:key_id>/rotate/", views.key_rotate, name="key_rotate"),
    path("keys/<str:key_id>/revoke/", views.key_revoke, name="key_revoke"),
    path("account/", views.account, name="account"),
]

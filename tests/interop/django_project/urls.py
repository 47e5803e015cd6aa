"""Only the endpoints the interop tests use: token and revocation."""

from __future__ import annotations

from django.urls import path
from oauth2_provider import views

urlpatterns = [
    path("o/token/", views.TokenView.as_view(), name="token"),
    path("o/revoke_token/", views.RevokeTokenView.as_view(), name="revoke-token"),
]

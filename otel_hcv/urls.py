from django.urls import path, re_path

from otel_hcv import views
from otel_hcv.health import views as health_views

app_name = "otel_hcv"

urlpatterns = [
    path("metrics/", views.metrics_summary, name="metrics-summary"),
    path("health/", health_views.health, name="health"),
    # Probes are configured by hand: accept both spellings rather than redirect.
    re_path(r"^health/live/?$", health_views.live, name="health-live"),
    re_path(r"^health/ready/?$", health_views.ready, name="health-ready"),
]

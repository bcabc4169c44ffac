from django.urls import path

from otel_hcv import views

app_name = "otel_hcv"

urlpatterns = [
    path("metrics/", views.metrics_summary, name="metrics-summary"),
]

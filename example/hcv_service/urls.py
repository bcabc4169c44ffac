from django.urls import include, path

from diagnosis.views import DiagnoseAPIView, ObtainAuthTokenView

urlpatterns = [
    path("api/diagnose/", DiagnoseAPIView.as_view(), name="diagnose"),
    path("api/token/", ObtainAuthTokenView.as_view(), name="api-token"),
    # /health/, /health/live, /health/ready and the /metrics/ summary.
    path("", include("otel_hcv.urls")),
]

# Errors outside DRF's own handling (a 500, a rejected Host header) answer in JSON as the API
# does, and without the exception text.
handler400 = "rest_framework.exceptions.bad_request"
handler500 = "rest_framework.exceptions.server_error"

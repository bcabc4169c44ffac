from django.urls import include, path

from tests.testapp import views

urlpatterns = [
    path("diagnose/", views.DiagnoseView.as_view()),
    path("plain/", views.plain_view),
    path("guarded/", views.GuardedView.as_view()),
    path("async/", views.async_view),
    path("async-fail/", views.failing_async_view),
    path("routes/", include("tests.testapp.routing")),
    path("", include("otel_hcv.urls")),
]

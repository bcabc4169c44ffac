from django.urls import include, path
from ledger.views import BudgetViewSet
from rest_framework.routers import DefaultRouter
from rest_framework_simplejwt.views import TokenObtainPairView

router = DefaultRouter()
router.register(r"users/me/budgets", BudgetViewSet, basename="budget")

urlpatterns = [
    path("api/token/", TokenObtainPairView.as_view(), name="token"),
    path("api/", include(router.urls)),
    path("", include("otel_hcv.urls")),
]

import logging

from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from ledger.filters import BudgetFilter
from ledger.models import Budget
from ledger.serializers import BudgetSerializer
from otel_hcv import track_api_metrics

logger = logging.getLogger(__name__)


class BudgetViewSet(viewsets.ModelViewSet):
    serializer_class = BudgetSerializer
    filterset_class = BudgetFilter

    def get_queryset(self):
        return Budget.objects.filter(owner=self.request.user).prefetch_related("entries").order_by("id")

    @track_api_metrics("budget_create")
    def create(self, request: Request, *args, **kwargs) -> Response:
        logger.info("Creating a budget", extra={"entries": len(request.data.get("entries", []))})
        return super().create(request, *args, **kwargs)

    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str | None = None, format: str | None = None) -> Response:
        budget = self.get_object()
        budget.closed = True
        budget.save(update_fields=["closed"])
        logger.info("Closed a budget")
        return Response(self.get_serializer(budget).data)

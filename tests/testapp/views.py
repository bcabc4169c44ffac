import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from otel_hcv import trace_diagnosis, track_api_metrics

logger = logging.getLogger(__name__)


class EchoSerializer(serializers.Serializer):
    value = serializers.IntegerField(min_value=0)


class DiagnoseView(APIView):
    @track_api_metrics("test_diagnosis")
    def post(self, request: Request) -> Response:
        serializer = EchoSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with trace_diagnosis(model_version="test-model") as diagnosis:
            if serializer.validated_data["value"] == 13:
                raise RuntimeError("unlucky value 13")
            diagnosis.set_result("0=Blood Donor", 0.9)
        return Response({"category": "0=Blood Donor"})


@track_api_metrics()
def plain_view(request: HttpRequest) -> HttpResponse:
    logger.info("plain view served")
    return HttpResponse("plain", status=201)


@track_api_metrics("async_endpoint")
async def async_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"async": True})


@track_api_metrics("failing_async")
async def failing_async_view(request: HttpRequest) -> JsonResponse:
    raise ValueError("boom")


class GuardedView(APIView):
    """Answers with DRF's own 4xx responses, which Django logs after the middleware chain."""

    def get(self, request: Request) -> Response:
        outcome = request.query_params.get("outcome", "")
        if outcome == "unauthorized":
            raise exceptions.NotAuthenticated()
        if outcome == "missing":
            raise exceptions.NotFound()
        if outcome == "invalid":
            raise exceptions.ValidationError({"value": ["not a number"]})
        return Response({"ok": True})

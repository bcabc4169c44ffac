"""The diagnosis API.

Lab values never appear in log messages or telemetry: the view logs that a request arrived and
hands the model's answer (category and probability) to ``trace_diagnosis``, nothing more.
"""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from diagnosis import model
from diagnosis.careless import careless_telemetry
from diagnosis.categories import CATEGORY_LABELS
from diagnosis.models import DiagnosisRecord
from diagnosis.parsers import SizeLimitedFormParser, SizeLimitedJSONParser
from diagnosis.serializers import DiagnosisRequestSerializer
from otel_hcv import trace_diagnosis, track_api_metrics

logger = logging.getLogger("diagnosis")

# With settings.HCV_ALLOW_FAILURE_INJECTION on, the header "X-HCV-Fail" makes a request misbehave
# on purpose, so that demos and tests can produce a real error trace and check what leaves:
#   diagnosis            fails inside the diagnosis span (a 500)
#   diagnosis-with-data  fails with the lab values in the exception message, as careless code would
#   log-request-data     logs the raw request data, as careless code would, then answers normally
#   careless-code        puts the lab values everywhere careless code does, then fails (diagnosis.careless)
FAILURE_INJECTION_HEADER = "X-HCV-Fail"
FAILURE_INJECTION_TARGET = "diagnosis"
FAILURE_WITH_DATA_TARGET = "diagnosis-with-data"
CARELESS_LOG_TARGET = "log-request-data"
CARELESS_CODE_TARGET = "careless-code"


class DiagnoseAPIView(APIView):
    """POST the lab values of one person, in the HCV data set's units; get the model's category.

    For an authenticated user the view also reads their latest stored diagnosis and stores the new
    one (unless settings.HCV_STORE_DIAGNOSES is off), so that a benchmark exercises the database
    the way a real service would. Anonymous requests touch no database table.
    """

    parser_classes = [SizeLimitedJSONParser]

    @track_api_metrics("hcv_diagnosis")
    def post(self, request: Request) -> Response:
        logger.info("Diagnosis request received", extra={"endpoint": "hcv_diagnosis"})
        misbehaviour = _injected_misbehaviour(request)
        if misbehaviour == CARELESS_LOG_TARGET:
            logger.warning("Diagnosis request data: %s", request.data)
        if misbehaviour == CARELESS_CODE_TARGET:
            careless_telemetry(request, dict(request.data))
        serializer = DiagnosisRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        user = request.user if request.user.is_authenticated else None
        previous_record = _latest_record(user) if user is not None else None

        with trace_diagnosis(model_version=model.MODEL_VERSION) as diagnosis:
            if misbehaviour == FAILURE_INJECTION_TARGET:
                raise RuntimeError("injected diagnosis failure")
            if misbehaviour == FAILURE_WITH_DATA_TARGET:
                raise RuntimeError(f"injected diagnosis failure for {dict(request.data)}")
            prediction = model.predict(serializer.validated_data)
            diagnosis.set_result(category=prediction.category, probability=prediction.probability)

        if user is not None and getattr(settings, "HCV_STORE_DIAGNOSES", True):
            DiagnosisRecord.objects.create(
                user=user, category=prediction.category, probability=prediction.probability
            )

        return Response(
            {
                "category": prediction.category,
                "label": prediction.label,
                "probability": round(prediction.probability, 4),
                "model_version": model.MODEL_VERSION,
                "previous_diagnosis": _describe(previous_record),
            }
        )


class ObtainAuthTokenView(ObtainAuthToken):
    """DRF's token endpoint (username and password in, token out) with the body size limit."""

    parser_classes = [SizeLimitedFormParser, SizeLimitedJSONParser]


def _injected_misbehaviour(request: Request) -> str | None:
    if not getattr(settings, "HCV_ALLOW_FAILURE_INJECTION", False):
        return None
    requested = request.headers.get(FAILURE_INJECTION_HEADER, "").strip().lower()
    known = (FAILURE_INJECTION_TARGET, FAILURE_WITH_DATA_TARGET, CARELESS_LOG_TARGET, CARELESS_CODE_TARGET)
    return requested if requested in known else None


def _latest_record(user: AbstractBaseUser) -> DiagnosisRecord | None:
    return DiagnosisRecord.objects.filter(user=user).order_by("-created_at").first()


def _describe(record: DiagnosisRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "category": record.category,
        "label": CATEGORY_LABELS.get(record.category, record.category),
        "probability": round(record.probability, 4),
        "created_at": record.created_at.isoformat(),
    }

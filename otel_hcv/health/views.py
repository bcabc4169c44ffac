"""``/health/``, ``/health/live`` and ``/health/ready``: plain Django views, no DRF.

``/health/`` keeps the monitoring plan's JSON shape::

    {"status": "healthy" | "unhealthy", "timestamp": 1733000000.0,
     "checks": {"database": {"healthy": true, "message": "ok"}, ...}}

Anonymous callers get "ok"/"failing" as each check's message; an authorised caller (the
``health_token`` as a bearer token, or a logged-in staff user) gets the check's own
message plus its details, duration and criticality. Neither ever gets exception text.
``timestamp`` is when the checks ran: results are cached for ``health_cache_seconds``.

The views are sync. A request waits for the checks only when the cached results are stale
and a run is in flight (the background refresher usually renews them first), and then at
most the longest check timeout. Under ASGI that wait happens in Django's thread for sync
code; async views would not avoid it while OpenTelemetry's Django middleware (sync-only)
sits in front of every view.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from otel_hcv import state
from otel_hcv.health.runner import CheckOutcome, HealthReport, get_runner

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
ANONYMOUS_OK = "ok"
ANONYMOUS_FAILING = "failing"


def is_authorised(request: HttpRequest) -> bool:
    """The configured bearer token (constant-time comparison), or a staff user."""
    token = state.current_settings().health_token
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer":
        return hmac.compare_digest(credentials.strip().encode(), token.encode())
    # Only without a token: the user may need the session and user tables, and a monitor
    # should not wait on the database it is asking about.
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def _check_json(outcome: CheckOutcome, authorised: bool) -> dict[str, Any]:
    if not authorised:
        return {"healthy": outcome.healthy, "message": ANONYMOUS_OK if outcome.healthy else ANONYMOUS_FAILING}
    result = outcome.result
    return {
        "healthy": outcome.healthy,
        "message": result.message,
        "critical": outcome.critical,
        "duration_seconds": round(result.duration, 6),
        "details": dict(result.details),
    }


def _respond(report: HealthReport, healthy: bool, request: HttpRequest) -> JsonResponse:
    authorised = is_authorised(request)
    body = {
        "status": HEALTHY if healthy else UNHEALTHY,
        "timestamp": report.timestamp,
        "checks": {name: _check_json(outcome, authorised) for name, outcome in report.outcomes.items()},
    }
    response = JsonResponse(body, status=200 if healthy else 503)
    # A 503 here is an answer, not a server error: without this, Django logs every one at
    # ERROR ("Service Unavailable"), once per probe, into the OTLP logs and Sentry. The
    # runner logs each check once when it starts failing and once when it recovers.
    response._has_been_logged = True  # type: ignore[attr-defined]  # read by django.utils.log.log_response
    return response


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """Every check; 503 when any of them fails."""
    report = get_runner().report()
    return _respond(report, report.healthy, request)


@never_cache
@require_safe
def ready(request: HttpRequest) -> JsonResponse:
    """Critical checks only (Kubernetes readiness): 503 takes the instance out of rotation."""
    report = get_runner().report().critical_only()
    return _respond(report, report.healthy, request)


@never_cache
@require_safe
def live(request: HttpRequest) -> JsonResponse:
    """The process answers requests (Kubernetes liveness); touches no dependency."""
    return JsonResponse({"status": HEALTHY, "timestamp": time.time()})

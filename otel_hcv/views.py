"""The JSON metrics summary endpoint."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from otel_hcv import state, summary


# The same caching rules as the health endpoints: every answer is of this moment.
@never_cache
@require_safe
def metrics_summary(request: HttpRequest) -> JsonResponse:
    """The plan's ``MetricsView`` fields for the last window, for this process."""
    if state.active() is None:
        return JsonResponse({"error": "metrics are not being collected: otel_hcv is not configured"}, status=503)
    return JsonResponse(summary.current.summary(state.current_settings().summary_window_seconds))

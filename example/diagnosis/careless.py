"""Ordinary careless application code, for demos and tests of what leaves the process.

Only reachable with ``settings.HCV_ALLOW_FAILURE_INJECTION`` on and the request header
``X-HCV-Fail: careless-code``. It does what a busy team does with lab values in hand: f-strings and
%-arguments in log lines, the values as log extras and span attributes under home-made keys, the
user object in a log extra, the raw path as a metric endpoint, and an exception group whose
messages and notes hold the values. otel-hcv must let none of it leave.
"""

import logging
from collections import namedtuple
from typing import Any

from opentelemetry import trace

from otel_hcv import MetricsCollector

logger = logging.getLogger("diagnosis.careless")
Panel = namedtuple("Panel", "alb alt crea")


def careless_telemetry(request: Any, values: dict[str, Any]) -> None:
    alb, alt, crea = values.get("alb"), values.get("alt"), values.get("crea")
    logger.info(f"alb={alb} alt={alt}")
    logger.info("albumin %s, creatinine of %.3f umol/l", alb, float(crea or 0))
    logger.info("panel %s for %s", Panel(alb, alt, crea), request.user)
    logger.info("handling %s", request)
    logger.info("observations", extra={"panel": [alb, alt], "user": request.user,
                                       "observations": [{"code": "ALB", "value": alb}]})  # fmt: skip
    span = trace.get_current_span()
    span.set_attribute("hcv.lab_alb", str(alb))
    span.set_attribute("patient_age", values.get("age") or 0)
    span.add_event(f"creatinine measured {crea}", {"crea_umol_l": crea or 0})
    MetricsCollector.record_api_metrics(request.get_full_path(), request.method, 200, 0.001)
    note_error = ValueError(f"implausible alb={alb}")
    note_error.add_note(f"crea was {crea}; user {request.user}")
    raise ExceptionGroup(f"careless diagnosis of {alt}", [note_error, KeyError(f"alt {alt}")])

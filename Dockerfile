# Example HCV service, instrumented with OpenTelemetry (used by docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . /app
RUN pip install -e ".[sentry]"

EXPOSE 8000
# Apply migrations, then serve under the OpenTelemetry auto-instrumentation
# wrapper; the OTEL_* and HCV_* settings come from the environment.
CMD ["sh", "-c", "python example/manage.py migrate --noinput && exec opentelemetry-instrument python example/manage.py runserver 0.0.0.0:8000 --noreload"]

"""The example's URLs plus ``/bench/wait/``, an async view that waits without using the CPU, for
bench/asgi_concurrency.py: with every layer async, concurrent requests overlap their waits; where
a layer runs synchronously, Django runs it in one thread shared by all requests and they queue."""

import asyncio
import os

from django.http import JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

# How long the view waits, in seconds (BENCH_WAIT_MS of the server's environment).
WAIT_SECONDS = float(os.environ.get("BENCH_WAIT_MS", "50")) / 1000


@csrf_exempt  # the benchmark POSTs the same body to every endpoint
async def wait(request):
    await asyncio.sleep(WAIT_SECONDS)
    return JsonResponse({"waited_ms": WAIT_SECONDS * 1000})


urlpatterns = [
    path("bench/wait/", wait, name="bench-wait"),
    path("", include("hcv_service.urls")),
]

"""The real Jaeger UI of the native stack, read in headless Chromium: the trace page the
demo prints, the search page and the Monitor tab (span metrics from Prometheus) show the
example service's spans and operations. Each test saves a screenshot in its output folder."""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.request

import pytest
from selenium.webdriver.common.by import By

from tests.support.backends import Jaeger, eventually, stack_env, stack_service_env
from tests.support.browser import chromium, screenshot, wait_for_text
from tests.support.service import ServiceProcess, free_port, instrumented_runserver, manage, post_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

LABS = {"age": 47, "sex": "m", "alb": 38.5, "alp": 52.5, "alt": 7.7, "ast": 22.1, "bil": 7.5,
        "che": 6.93, "chol": 3.23, "crea": 106.0, "ggt": 12.1, "prot": 69.0}  # fmt: skip
SERVER_SPAN = "POST api/diagnose/"
PLACEHOLDER = "This is not the Jaeger UI you are looking for"


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """Diagnoses of a service with a name of its own, in Jaeger and in the span metrics."""
    stack = stack_env()
    service_name = f"hcv-ui-{secrets.token_hex(3)}"
    env = stack_service_env(service_name)
    manage(["migrate", "--noinput"], env)
    user = json.loads(manage(["create_demo_user", "--username", f"ui-{service_name}", "--json"], env))
    port = free_port()
    logs = tmp_path_factory.mktemp("jaeger-ui-service")
    service = ServiceProcess(instrumented_runserver(port), env, port, logs / "service.log")
    trace_ids = []
    try:
        service.wait_ready()
        headers = {"Authorization": f"Token {user['token']}"}
        # In three rounds, more than one span-metrics flush (5 s) apart: a series appears with
        # the count it has at its first flush, so rate() -- and the Monitor tab's latency --
        # needs requests after that.
        for round_ in range(3):
            for _ in range(2):
                trace_id = secrets.token_hex(16)
                traceparent = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
                status, _ = post_json(f"{service.url}/api/diagnose/", json.dumps(LABS), {**headers, **traceparent})
                assert status == 200
                trace_ids.append(trace_id)
            if round_ == 0:
                failure = post_json(f"{service.url}/api/diagnose/", json.dumps(LABS), {"X-HCV-Fail": "diagnosis"})
                assert failure[0] == 500
            time.sleep(6)
    finally:
        service.stop()
    jaeger = Jaeger(stack["JAEGER_QUERY_URL"])
    eventually(lambda: all(len(jaeger.trace(t)) >= 2 for t in trace_ids), timeout=60)
    return {"service": service_name, "trace_ids": trace_ids, "jaeger": stack["JAEGER_QUERY_URL"]}


def test_jaeger_serves_the_built_ui(traced):
    with urllib.request.urlopen(f"{traced['jaeger']}/", timeout=10) as response:
        html = response.read().decode(errors="replace")
    assert PLACEHOLDER not in html, (
        "Jaeger serves its placeholder page: no UI was built. `scripts/stack.sh install` builds it from "
        "shared/vendor/jaeger-ui/ beside the clone or from OTEL_HCV_JAEGER_UI (docs/stack.md)"
    )
    assert '<div id="jaeger-ui-root">' in html
    # The query service filled in its version and capabilities.
    assert "JAEGER_VERSION = {" in html


def test_trace_page_shows_the_span_tree(traced, tmp_path):
    trace_id = traced["trace_ids"][0]
    with chromium() as driver:
        # The link the demo prints for each trace.
        driver.get(f"{traced['jaeger']}/trace/{trace_id}")
        text = wait_for_text(driver, [traced["service"], SERVER_SPAN, "hcv.diagnosis"])
        screenshot(driver, tmp_path / "trace.png")
    assert PLACEHOLDER not in text
    assert trace_id[:7] in text  # the header shows the short trace id
    # Span rows: the server span and its diagnosis child, named after the service.
    assert text.index(SERVER_SPAN) < text.rindex("hcv.diagnosis")


def test_search_page_finds_the_service_traces(traced, tmp_path):
    with chromium() as driver:
        driver.get(f"{traced['jaeger']}/search?service={traced['service']}&lookback=1h&limit=20")
        text = wait_for_text(driver, [f"{traced['service']}: {SERVER_SPAN}"], ready=lambda t: "Traces" in t)
        screenshot(driver, tmp_path / "search.png")
    # One result per request: the six diagnoses and the injected failure.
    assert text.count(f"{traced['service']}: {SERVER_SPAN}") == 7, text[:3000]
    assert "Error" in text  # the failed diagnosis is marked


@pytest.mark.parametrize(("span_kind", "operation"), [("server", SERVER_SPAN), ("internal", "hcv.diagnosis")])
def test_monitor_tab_lists_the_operations(traced, tmp_path, span_kind, operation):
    service = traced["service"]
    with chromium() as driver:
        driver.get(f"{traced['jaeger']}/search")
        wait_for_text(driver, ["Monitor"])
        # The Monitor tab shows the service it showed last (the UI keeps it in localStorage,
        # JSON-encoded), else the first one: point it at this test's service, then open it
        # through the top menu like a person would.
        driver.execute_script(
            "localStorage.setItem('lastAtmSearchService', JSON.stringify(arguments[0]));"
            "localStorage.setItem('lastAtmSearchSpanKind', JSON.stringify(arguments[1]));",
            service,
            span_kind,
        )
        driver.find_element(By.LINK_TEXT, "Monitor").click()

        def operation_row() -> str:
            rows = driver.find_elements(By.XPATH, f"//tr[td[contains(., '{operation}')]]")
            return rows[0].text if rows else ""

        # Rates need two scrapes of the span metrics: reload until the operation's row has
        # a latency in milliseconds (NaN shows as "< 0.1µs") and a request rate.
        text = wait_for_text(
            driver,
            [f"Operations metrics under {service}", operation],
            timeout=150,
            reload_every=15,
            ready=lambda _: bool(re.search(r"\d ?ms\b", operation_row())),
        )
        row = operation_row()
        screenshot(driver, tmp_path / f"monitor-{span_kind}.png")
        assert "/monitor" in driver.current_url
    assert "Request rate" in text and "Error rate" in text and "Latency" in text, text[:3000]
    assert re.search(r"req/s", row) and re.search(r"\d+(\.\d+)? ?%", row), row
    # One request of seven failed (a rate ratio, so not exactly 1/7).
    assert re.search(r"\b[1-9]\d*(\.\d+)?%", row), row


def test_a_span_links_to_the_log_lines_of_its_trace(traced, tmp_path):
    """From a span's details (its process's service.instance.id) one click opens VictoriaLogs'
    UI on the trace's log lines; each line there carries the way back (trace_in_jaeger)."""
    trace_id = traced["trace_ids"][0]
    with chromium() as driver:
        driver.get(f"{traced['jaeger']}/trace/{trace_id}")
        wait_for_text(driver, [traced["service"], SERVER_SPAN, "hcv.diagnosis"])
        # Open the server span's details, then its Process section.
        driver.find_element(By.XPATH, f"//*[contains(@class, 'span-name') and contains(., '{SERVER_SPAN}')]").click()
        wait_for_text(driver, ["Process:"])
        process_header = "//*[contains(@class, 'AccordianKeyValues--header')][contains(., 'Process')]"
        driver.find_element(By.XPATH, process_header).click()
        # The link in the span's Process table (the trace page's header has one of its own).
        in_process = f"{process_header}/following-sibling::*//a[contains(@href, '/select/vmui/')]"
        links = eventually(
            lambda: [a for a in driver.find_elements(By.XPATH, in_process) if a.is_displayed()],
            timeout=20,
            interval=0.5,
        )
        href = links[0].get_attribute("href")
        assert f"trace_id%3A%22{trace_id}%22" in href, href
        # The linked value is the process's service.instance.id (a UUID the SDK made).
        assert re.fullmatch(r"[0-9a-f-]{36}", links[0].text.strip()), links[0].text
        screenshot(driver, tmp_path / "span-details.png")
        before = set(driver.window_handles)
        links[0].click()  # target=_blank: VictoriaLogs opens in a new tab
        new_tabs = eventually(lambda: set(driver.window_handles) - before, timeout=10, interval=0.5)
        driver.switch_to.window(new_tabs.pop())
        wait_for_text(driver, ["Diagnosis request received", "Last 7 days"], timeout=60, reload_every=10)
        assert "/select/vmui/" in driver.current_url
        # A line's fields, opened like a person would: the ids, and the way back to Jaeger.
        driver.find_element(By.XPATH, "//*[text()='Diagnosis request received']").click()
        text = wait_for_text(driver, ["trace_in_jaeger", f"{traced['jaeger']}/trace/{trace_id}", "request_id"])
        screenshot(driver, tmp_path / "victorialogs.png")
    assert re.search(rf"trace_id\s+{trace_id}", text), text[-2000:]
    assert re.search(r"span_id\s+[0-9a-f]{16}", text), text[-2000:]

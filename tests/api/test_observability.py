"""Prometheus metrics and the dashboard, against real servers and a real headless Chromium."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from tests.api.conftest import ARTIFACTS, Server, start_server

pytestmark = pytest.mark.model


def samples(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests_total(values: dict, status: str, cache: str) -> float:  # type: ignore[type-arg]
    labels = (
        ("cache", cache),
        ("dialect", "native"),
        ("service", "generation"),
        ("status", status),
    )
    return values.get(("codey_requests_total", labels), 0.0)


def test_a_miss_a_hit_and_a_429_each_move_their_counter_by_one(tmp_path: Path) -> None:
    server = start_server(tmp_path, CODEY_LIMITS__GENERATION__REQUESTS_PER_DAY="2")
    body = {
        "prompt": f"a function named f_{uuid.uuid4().hex[:6]} that returns 1",
        "max_tokens": 32,
        "temperature": 0,
    }
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            before = samples(client)
            assert client.post("/api/v1/codey/generate", json=body).status_code == 200
            after_miss = samples(client)
            assert client.post("/api/v1/codey/generate", json=body).json()["cached"] is True
            after_hit = samples(client)
            client.post("/api/v1/codey/generate", json={**body, "max_tokens": 16})
            refused = client.post("/api/v1/codey/generate", json={**body, "max_tokens": 8})
            assert refused.status_code == 429
            after_429 = samples(client)
    finally:
        server.stop()
    assert requests_total(after_miss, "200", "miss") - requests_total(before, "200", "miss") == 1
    assert requests_total(after_hit, "200", "hit") - requests_total(after_miss, "200", "hit") == 1
    assert requests_total(after_hit, "200", "miss") == requests_total(after_miss, "200", "miss")
    assert requests_total(after_429, "429", "miss") - requests_total(after_hit, "429", "miss") == 1
    tokens = ("codey_completion_tokens_total", (("service", "generation"),))
    assert after_miss[tokens] > before.get(tokens, 0)
    assert after_hit[tokens] == after_miss[tokens]  # a hit generates nothing
    count = ("codey_request_duration_seconds_count", (("service", "generation"),))
    assert after_miss[count] == 1
    remaining = (
        "codey_quota_remaining_requests",
        (("principal", "anonymous"), ("service", "generation")),
    )
    assert after_429[remaining] == 0
    model = (("model", "qwen2.5-coder-0.5b-instruct"),)
    assert ("codey_engine_queue_depth", model) in after_429
    # the batcher counted the answer's tokens and the steps that made them
    decoded = after_miss[("codey_engine_decoded_tokens_total", model)]
    assert decoded >= after_miss[tokens] - before.get(tokens, 0)
    assert 0 < after_miss[("codey_engine_steps_total", model)] <= decoded + 8
    assert after_miss[("codey_engine_decode_seconds_total", model)] > 0
    assert after_429[("codey_engine_slots", model)] >= 1


def test_the_dashboard_shows_the_apis_numbers_and_the_playground_returns_code(
    server: Server, browser: webdriver.Chrome
) -> None:
    driver = browser
    with httpx.Client(base_url=server.url, timeout=120) as client:
        client.post(
            "/api/v1/codey/complete", json={"prefix": "import numpy as ", "max_completions": 1}
        )
        usage = client.get("/api/v1/codey/usage").json()
    driver.get(server.url + "/")
    wait = WebDriverWait(driver, 60)
    wait.until(ready.presence_of_element_located((By.ID, "usage-completion-requests")))
    for service, numbers in usage["services"].items():
        shown = driver.find_element(By.ID, f"usage-{service}-requests").text
        assert shown.replace(",", "") == str(numbers["requests"])
        quota = driver.find_element(By.ID, f"usage-{service}-quota").text
        assert quota.replace(",", "") == str(numbers["quota"])
    wait.until(ready.presence_of_element_located((By.ID, "latency-completion-percentiles")))
    with httpx.Client(base_url=server.url, timeout=120) as client:
        (embedded,) = client.get("/api/v1/codey/stats").json()["deployments"]
    row = driver.find_element(By.ID, "deployment-embedded-0.5b")
    cells = row.find_elements(By.TAG_NAME, "td")
    assert [c.text for c in cells[:3]] == [embedded["model"], "embedded-0.5b", "llamacpp"]
    assert cells[4].text == "closed"
    assert cells[5].text.replace(",", "") == str(embedded["attempts"]["ok"])
    assert cells[7].text == embedded["state"] == "ready"
    engine_line = driver.find_element(By.ID, "engine-status").text
    assert engine_line.startswith(
        "Embedded engine (qwen2.5-coder-0.5b-instruct): ready, 0 restarts"
    ), engine_line
    assert re.search(r"Slots: \d+ of \d+ busy, \d+ waiting; [\d.]+ tokens per step", engine_line)

    driver.find_element(By.ID, "play-generate-run").click()
    wait = WebDriverWait(driver, 180)
    wait.until(lambda d: "def " in d.find_element(By.ID, "play-output").text)
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    logs = driver.get_log("browser")
    assert [entry for entry in logs if entry["level"] == "SEVERE"] == [], json.dumps(logs)

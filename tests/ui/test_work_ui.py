"""Work pools & queues and notification rules in a real browser (Debian's Chromium) against a
real `legato server start`: a pool and a queue made by typing, the queue paused and resumed by
clicking (the server's store says so each time), and a notification rule made by ticking
states and choosing a saved web-hook block."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.integration.deploy_helpers import Stack
from tests.ui.conftest import base_url

from legato.blocks.notifications import CustomWebhookNotificationBlock


def _queue(stack: Stack, name: str, pool: str) -> dict[str, Any]:
    import httpx  # the server's own answer, not the page's

    r = httpx.get(f"{stack.api_url}/work_queues/name/{name}",
                  params={"work_pool_name": pool}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_create_a_queue_pause_and_resume_it_and_add_a_notification_rule(
        stack: Stack, page: Any, shoot: Any) -> None:
    stack.start_server()
    url = base_url(stack)

    page.goto(url + "/work-pools")
    page.fill("#pool-name", "nightly")
    page.select_option("#pool-type", "docker")
    page.fill("#pool-limit", "4")
    page.click("button:text('Create pool')")
    assert page.locator(".notice.ok").inner_text() == "Work pool nightly created."

    page.fill("#queue-name", "high-memory")
    page.select_option("#queue-pool", "nightly")
    page.fill("#queue-priority", "2")
    page.click("button:text('Create queue')")
    assert page.locator(".notice.ok").inner_text() == "Work queue nightly/high-memory created."
    assert _queue(stack, "high-memory", "nightly")["is_paused"] is False

    queue_row = page.locator("tr[data-queue='high-memory']")
    queue_row.locator("button[data-action=pause]").click()
    assert page.locator(".notice.ok").inner_text() == "Work queue nightly/high-memory paused."
    assert "paused" in queue_row.inner_text()
    assert _queue(stack, "high-memory", "nightly")["is_paused"] is True
    shoot(page, "work-pools")

    queue_row.locator("button[data-action=resume]").click()
    assert page.locator(".notice.ok").inner_text() == "Work queue nightly/high-memory resumed."
    assert "paused" not in queue_row.inner_text()
    assert _queue(stack, "high-memory", "nightly")["is_paused"] is False

    # a rule: Failed and Crashed runs of the whole server, sent with a saved web hook
    hook = CustomWebhookNotificationBlock(name="ops", url="http://127.0.0.1:9/hook")
    with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs here: save() would be async
        block_id = pool.submit(hook.save, "ops-hook", client=stack.client).result(timeout=30)
    page.goto(url + "/notifications")
    page.check("input[name=state][value=TimedOut]")
    page.select_option("#rule-block", block_id)
    page.fill("#rule-tags", "prod")
    page.fill("#rule-name", "production failures")
    page.click("button:text('Create rule')")
    assert "Notification rule created" in page.locator(".notice.ok").inner_text()
    rule = page.locator("table.rules tbody tr")
    assert rule.count() == 1
    assert "production failures" in rule.inner_text() and "TimedOut" in rule.inner_text()
    assert rule.locator(f"a[href='/blocks/{block_id}']").inner_text() == "ops-hook"
    shoot(page, "notifications")

"""The dashboard in a real browser: headless Chromium (Debian's, /usr/bin/chromium, which
scripts/test installs) driven by Playwright, against a live `jobrt start` and `jobrt
dashboard`, in one browser session: the overview shows the queues and their counts; a job
that failed appears on the failed page, is retried from there and then succeeds; a batch's
progress bar moves while its members finish; the metrics page draws its charts; no page
logs a console error. Screenshots go to the test's tmp dir (and to $JOBRT_SCREENSHOTS when
set: `JOBRT_SCREENSHOTS=docs/screenshots` refreshes the README's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import connect
from tests.conftest import REPO, wait_for, write_config

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/test installs it)")
TIMEOUT_MS = 20_000


class Dashboard:
    """`jobrt dashboard --listen 127.0.0.1:0`, its address read from its first line."""

    def __init__(self, config: Path):
        self.log_path = config.parent / "dashboard.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "dashboard", "--config", str(config),
             "--listen", "127.0.0.1:0"], cwd=config.parent, stdout=self.log,
            stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(REPO)))
        line = wait_for(lambda: self._address() or self._died(), 30, "the dashboard's address")
        self.url = line.rstrip("/")

    def _address(self):
        text = self.log_path.read_text(errors="replace")
        if "jobrt dashboard on http://" in text:
            return text.split("jobrt dashboard on ", 1)[1].split()[0]
        return None

    def _died(self):
        if self.proc.poll() is not None:
            raise AssertionError("jobrt dashboard exited:\n" + self.log_path.read_text(errors="replace"))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def test_the_dashboard_in_a_browser(tmp_path, start_supervisor):
    config = write_config(tmp_path, pools={"default": {"queues": ["default", "low"], "workers": 5}},
                          storage={"poll": 0.2},
                          jobs={"modules": ["jobs.examples", "jobs.batch_examples"],
                                "path": [str(REPO)]})
    start_supervisor(config)  # 5 workers: the batch's 4 members wait for their gates
    dashboard = Dashboard(config)
    shots = [tmp_path]
    if os.environ.get("JOBRT_SCREENSHOTS"):
        shots.append(Path(os.environ["JOBRT_SCREENSHOTS"]))
    fix, gates = tmp_path / "fixed", tmp_path / "gates"
    gates.mkdir()
    with connect(config=str(config)) as q:
        for _ in range(3):
            q.enqueue("jobs.examples:sleep", 3600.0, _queue="low", _delay=3600)
        failing = q.enqueue("jobs.batch_examples:fails_until", str(fix))
        batch = q.batch([("jobs.batch_examples:waits_for", (str(gates / str(i)),)) for i in range(4)],
                        name="nightly").id
        wait_for(lambda: q.status(failing).state == "failed", 30, "the job to fail")
    errors: list[str] = []
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

            def shot(name):
                for directory in shots:
                    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)

            # The overview: the queues and their counts, the supervisor, health.
            page.goto(dashboard.url + "/")
            low = page.locator('tr[data-queue="low"] td')
            assert low.nth(2).inner_text() == "3"  # delayed
            page.locator('tr[data-queue="default"]').wait_for()
            assert page.locator("#supervisors tbody tr").count() == 1
            page.wait_for_function("document.body.getAttribute('data-refreshed') !== null")
            # The failed job: listed, retried from the page (selected), then it succeeds.
            page.goto(dashboard.url + "/failed")
            row = page.locator(f'tr[data-job="{failing}"]')
            assert "does not exist yet" in row.locator("td.error").inner_text()
            fix.write_text("")
            row.locator('input[name="ids"]').check()
            page.locator("#retry-selected button").click()
            page.wait_for_url("**/failed?done=*")
            assert "1 of 1 failed jobs put back" in page.locator(".notice").inner_text()
            page.goto(f"{dashboard.url}/jobs/{failing}")
            page.wait_for_function("document.querySelector('#job-state').innerText.trim() === 'succeeded'")
            assert '"fixed"' in page.locator("#job-result").inner_text()
            shot("job")
            # The batch: its progress moves as its members finish.
            page.goto(f"{dashboard.url}/batches/{batch}")
            assert page.locator("#batch-progress").inner_text() == "0%"
            for i in range(2):
                (gates / str(i)).write_text("")
            page.wait_for_function("document.querySelector('#batch-progress').innerText === '50%'")
            shot("batch")
            for i in range(2, 4):
                (gates / str(i)).write_text("")
            page.wait_for_function("document.querySelector('#batch-progress').innerText === '100%'")
            assert "4 succeeded" in page.locator("#batch-counts").inner_text()
            page.goto(dashboard.url + "/batches")
            assert page.locator(f'tr[data-batch="{batch}"]').inner_text().count("100%") == 1
            # The metrics: the supervisor's per-minute rows, drawn as SVG charts.
            page.goto(dashboard.url + "/")
            shot("overview")
            page.goto(dashboard.url + "/metrics-charts")
            for _ in range(100):  # the rows come with the supervisor's next heartbeat (<= 2 s)
                if page.locator(".chart svg path").count():
                    break
                page.wait_for_timeout(100)
                page.reload()
            assert page.locator('.chart[data-chart="by_name"] .legend').first.inner_text()
            shot("metrics")
            browser.close()
    finally:
        dashboard.stop()
    assert errors == [], errors

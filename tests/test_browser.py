"""End to end in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import build_audited_toy_run

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
PAGES = {"": "irl-lens", "distributions": "Reward distributions", "equivalent": "Equivalent models",
         "heatmaps": "Token heatmaps", "wants": "What it wants", "probe": "Live probe", "labels": "Your labels",
         "training": "Training",
         "rlhf": "IRL-RLHF"}  # fmt: skip
BAITED = {"name": "kindness", "preferred": '<a href="http://attacker.invalid/">kind</a>', "dispreferred": "<b>rude</b>",
          "ground_truth": "profanity"}  # fmt: skip
"""The e2e run's objective: words a run's author chose, which every page must show as typed."""
LINKS = """() => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes])
    .filter(a => a.name.endsWith('href') || a.name === 'src').map(a => a.value)
    .filter(v => v.includes('attacker.invalid'))"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, tiny_models):
    run = build_audited_toy_run(tmp_path_factory.mktemp("e2e") / "toy", tiny_models["toy"], wants=True)
    run.manifest.config["objective"] = BAITED
    run.save_manifest()
    port = _free_port()
    env = dict(os.environ, IRL_LENS_RUNS=str(run.path.parent / "none"))
    server = subprocess.Popen([sys.executable, "-m", "core.cli", "dashboard", str(run.path), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("the dashboard did not answer /_stcore/health within 60 s")
    yield url
    server.terminate()
    server.wait(timeout=20)
    with socket.socket() as s:  # stopping irl-lens stops the server: nothing keeps the port
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the dashboard outlived irl-lens"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), (
        "Debian's chromium is missing: scripts/setup installs it (apt-get install chromium)"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])  # fmt: skip
        yield browser
        browser.close()


def test_every_page_opens(dashboard, browser):
    """Every page renders without an exception, asks nothing of any host but the server, and
    turns none of the objective's words into a link or markup (Markdown and plotly alike)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outside = []
    page.on("request", lambda r: None if r.url.startswith((dashboard, "data:", "blob:")) else outside.append(r.url))
    for path, title in PAGES.items():
        page.goto(f"{dashboard}/{path}")
        page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        page.wait_for_timeout(500)
        assert page.locator("[data-testid='stException']").count() == 0, f"exception on /{path}"
        assert page.get_by_role("button", name="Deploy").count() == 0, "an audit tool offers no Deploy button"
        assert page.evaluate(LINKS) == [], f"/{path} links an objective word"
        bold = page.locator(".js-plotly-plot tspan[style*='bold']").all_text_contents()  # titles are bold too
        assert "rude" not in bold, f"/{path}: a chart drew the objective's <b> as markup"
        if path == "distributions":
            page.locator(".js-plotly-plot .legendtext").first.wait_for(timeout=30_000)  # drawn after the heading
            legend = page.locator(".js-plotly-plot .legendtext").all_text_contents()
            assert BAITED["preferred"] in legend and BAITED["dispreferred"] in legend, legend
        page.screenshot(path=str(ARTIFACTS / f"{path or 'home'}.png"), full_page=True)
    page.close()
    assert outside == [], f"the pages requested other hosts: {sorted(set(outside))}"


def test_report_opens_offline_and_runs_no_script_from_the_data(browser, tmp_path, tiny_models):
    from core.report import write_report

    run = build_audited_toy_run(tmp_path / "toy", tiny_models["toy"], saliency=True, wants=True)
    run.manifest.stages["battery"].summary["battery"][0]["why"] = "</script><script>window.__pwned=1</script>"
    run.manifest.models["note"] = '<img src="http://evil.example/x.png" onerror="window.__pwned=2">'
    out = write_report(run, tmp_path / "report.html")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(out.as_uri())
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    assert page.locator(".js-plotly-plot").count() >= 2, "the report's figures must draw"
    assert page.get_by_role("heading", name="Behaviour battery").count() == 1
    assert page.evaluate("() => window.__pwned") is None, "a script from the data ran"
    assert [u for u in requests if not u.startswith("file:")] == [], requests
    assert errors == [], errors  # no CSP violation: every script that ran was the report's own
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.close()


def test_probe_scores_and_shows_script_as_text(dashboard, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{dashboard}/probe")
    page.get_by_role("heading", name="Live probe").wait_for(timeout=60_000)
    page.locator("textarea").fill("<script>alert(1)</script>\nThe judge was kind and patient.\n"
                                  "[click](http://attacker.invalid/) **loud**")  # fmt: skip
    page.get_by_role("button", name="Score").click()
    page.get_by_text("Session history").wait_for(timeout=120_000)
    # the scores table renders Markdown in its cells (st.table): a probe's link stays text
    assert page.evaluate(LINKS) == [], "a probe's Markdown link became a link"
    assert page.locator("[data-testid='stTable'] strong", has_text="loud").count() == 0
    assert page.get_by_text("[click](http://attacker.invalid/) **loud**", exact=True).count() >= 1
    shown = page.get_by_text("<script>alert(1)</script>", exact=True)
    assert shown.count() >= 1, "the probe's script text must be displayed as text"
    page.get_by_text("patient.", exact=True).first.wait_for(timeout=60_000)
    assert page.locator("span[title]").count() > 0, "token heatmaps must render"
    assert dialogs == [], "an injected script ran"
    assert (
        page.evaluate("() => [...document.scripts].some(s => s.textContent.includes('alert(1)'))")
        is False
    )
    page.screenshot(path=str(ARTIFACTS / "probe-scored.png"), full_page=True)
    page.close()


def test_pages_fade_nothing_and_animate_nothing_for_a_browser_that_asks_for_reduced_motion(dashboard, browser):
    """No transitions for anyone (Streamlit fades every element on each rerun, which costs more
    CPU than the scoring where browsers share the server's cores); no animation either where the
    OS asks for reduced motion (Streamlit's spinners turn regardless), and animations elsewhere."""
    names = {}
    for motion in ("reduce", "no-preference"):
        context = browser.new_context(reduced_motion=motion)
        page = context.new_page()
        page.goto(f"{dashboard}/probe")
        page.get_by_role("heading", name="Live probe").wait_for(timeout=60_000)
        page.locator("[data-testid='stHtml'] style").wait_for(state="attached", timeout=60_000)
        names[motion] = page.evaluate("""() => {
            const probe = document.createElement("div");
            probe.style.animation = "irl-spin 1s linear infinite";
            probe.style.transition = "opacity 1s";
            document.body.appendChild(probe);
            const style = getComputedStyle(probe);
            return [style.animationName, style.transitionDuration];
        }""")
        context.close()
    assert names["reduce"] == ["none", "0s"], names
    assert names["no-preference"] == ["irl-spin", "0s"], names


def test_protocol_client_submits_the_probe_form_like_the_frontend(dashboard):
    """benchmarks/probe_latency.py --client protocol: Streamlit's websocket without a browser. Two
    sessions at once each get their own probe's heatmap back, with no error on the page."""
    import asyncio

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from probe_latency import protocol_session

    async def two():
        return await asyncio.gather(protocol_session(dashboard, ["alphamarker was kind and patient."]),
                                    protocol_session(dashboard, ["betamarker was rude to everyone."]))  # fmt: skip

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # a loop of its own: the sync Playwright fixtures hold this thread's
        sessions = pool.submit(asyncio.run, two()).result(timeout=300)
    results = [r for session in sessions for r in session]
    assert len(results) == 2
    assert all(r["errors"] == 0 and r["heatmaps_s"] is not None and r["done_s"] >= r["heatmaps_s"] for r in results)

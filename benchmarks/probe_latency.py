"""What an auditor feels: pressing "Score" on the live probe in a real browser until the scores and
every member's heatmap are drawn, alone and with colleagues on the same server.

Starts `irl-lens dashboard` on a run (default: the bundled demo), drives Debian's headless
Chromium through Playwright, types probes of about 8, 32 and 128 tokens and times click → the
probe's words drawn in the heatmaps → the script run finished (with the page's defaults:
the whole equivalent set on, counterfactuals on demand, so off; ``--no-whole-set`` and
``--counterfactuals`` set them the other way). One session, then N
concurrent sessions (N browser contexts), whose probes the server's queue scores in batches. The
server's peak resident memory is read from /proc (VmHWM of the server process), and the CPU
seconds the server and everything else (the browsers) used while the N sessions ran, the
browsers' by process (renderers, the software compositor, browser and network, Playwright's
driver): here the browsers share the server's 2 cores. Each page's first probe, which loads the
code of its tables and heatmaps, is timed apart from the others (``page_first_*``).

``--reduced-motion`` gives the browsers the OS's reduced-motion setting (Playwright emulates it),
under which the dashboard animates nothing: no spinner turns while a probe waits.
``--nice-browsers`` runs them at nice 19, so that the server's work goes first, as when
colleagues' browsers run on their own machines.

``--client protocol`` drives the same page without a browser: each session speaks Streamlit's own
websocket protocol (the BackMsg/ForwardMsg protobufs its frontend sends and receives), submits the
probe form with the widget ids the page announced, and times the click → the heatmaps' message →
the script run finished. Nothing is rendered, so the figures are the server's alone: what a team
whose browsers run on their own machines would see, plus drawing (the browser client's
``p50_heatmaps_s_1`` minus this one's says what drawing costs).

    .venv/bin/python benchmarks/probe_latency.py [--quick] [--run data/demo-run] [--sessions 8] [--counterfactuals] [--no-whole-set]
        [--nice-browsers] [--reduced-motion] [--client browser|protocol] [--think SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT / "scripts")]
from _common import CLEAN, SUBJECTS, machine  # noqa: E402
from screenshots import serve  # noqa: E402  (the dashboard on a free port, once healthy)

CHROMIUM = "/usr/bin/chromium"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
COUNTERFACTUALS = "Counterfactuals: the smallest edit"
WHOLE_SET = "The whole equivalent set"
BOXES = (COUNTERFACTUALS, WHOLE_SET)
"""The probe form's boxes a run sets, by the start of their labels: on where named in ``ticks``, else off."""
"""Streamlit's own marker of a finished script run (its status widget may never show for a fast one)."""


def probe(tokens: int, marker: str) -> str:
    """A probe of about ``tokens`` SmolLM2 tokens, with a unique marker word to wait for."""
    from core import policy

    tokenizer = policy.load_tokenizer("smollm2-135m")
    words = [marker]
    k = 0
    while len(tokenizer(" ".join(words))["input_ids"]) < tokens:
        words += f"{SUBJECTS[k % len(SUBJECTS)]} was {CLEAN[k % len(CLEAN)]}.".split()
        k += 1
    while len(tokenizer(" ".join(words))["input_ids"]) > tokens and len(words) > 1:
        words.pop()
    return " ".join(words)


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time used so far: by one process (all its threads), or by the whole machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    if pid is None:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        return (sum(map(int, fields)) - int(fields[3]) - int(fields[4])) / ticks  # minus idle, iowait
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def process_kind(pid: int) -> str:
    """What a process of the benchmark's tree is: a Chromium renderer (the page's JS, style, layout
    and paint), its compositor (``gpu-process``: with no GPU, frames are composited in software),
    its browser or network process, or Playwright's driver."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()  # Chromium rewrites its own
    kind = next((a[7:].decode() for a in argv if a.startswith(b"--type=")), None)
    if kind is None:
        return "driver" if b"node" in argv[0] else "browser"
    return {"gpu-process": "compositor", "renderer": "renderers"}.get(kind, "browser")


def cpu_by_kind(exclude: int) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process below this one but ``exclude`` (the server), by pid."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = {}, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        if pid != exclude:
            with contextlib.suppress(OSError):  # it has just exited
                out[pid] = (process_kind(pid), cpu_seconds(pid))
    return out


class StartLine:
    """Concurrent sessions load their pages first and start probing together, so that one
    session's probes are not timed against another's page load (``open_s_8`` reports the loads).
    All score their page's first probe together, then wait for each other again: a page's first
    probe loads the code of its tables and heatmaps (about 35 scripts, once per page load), and is
    reported on its own. They close their pages only when all have finished, so that every
    renderer's CPU is counted."""

    def __init__(self, sessions: int, server_pid: int) -> None:
        self.barrier, self.server_pid = asyncio.Barrier(sessions), server_pid
        self.opened = time.perf_counter()
        self.marks: list[tuple[float, float, float, dict]] = []

    async def wait(self) -> None:
        """Pages loaded, first probes done, all probes done: a mark of the CPU clocks at each."""
        if await self.barrier.wait() == 0:
            self.marks.append((cpu_seconds(self.server_pid), cpu_seconds(), time.perf_counter(),
                               cpu_by_kind(self.server_pid)))  # fmt: skip


async def session(browser, url: str, probes: list[str], ticks: tuple[str, ...] = (),
                  start: StartLine | None = None, reduced_motion: bool = False, think: float = 0.0) -> list[dict]:  # fmt: skip
    """One auditor: open the probe page, take ``think`` seconds to type, score each probe in turn,
    time each (the first is the page's first, see :class:`StartLine`; it also holds ``form_s``, the
    page's opening until the form is drawn, and ``open_s``, until its script run finished)."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000},
                                        reduced_motion="reduce" if reduced_motion else "no-preference")  # fmt: skip
    page = await context.new_page()
    opening = time.perf_counter()
    await page.goto(f"{url}/probe")
    await page.get_by_role("heading", name="Live probe").wait_for(timeout=180_000)
    await page.get_by_text(COUNTERFACTUALS).first.wait_for(timeout=180_000)  # the form is drawn
    form_s = time.perf_counter() - opening
    await page.locator(IDLE).wait_for(timeout=180_000)  # and the page's script has sent every widget
    open_s = time.perf_counter() - opening
    await asyncio.sleep(think)
    for box in BOXES:
        checkbox = page.locator(f"input[type=checkbox][aria-label^={json.dumps(box)}]")
        if await page.get_by_text(box).count() and await checkbox.first.is_checked() != (box in ticks):
            await page.get_by_text(box).first.click()
    if start is not None:
        await start.wait()
    out = []
    for k, text in enumerate(probes):
        if k == 1 and start is not None:
            await start.wait()
        marker = text.split()[0]
        await page.locator("textarea").fill(text)
        clicked = time.perf_counter()
        await page.get_by_role("button", name="Score", exact=True).click()
        await page.locator("span[title]", has_text=marker).first.wait_for(timeout=300_000)
        drawn = time.perf_counter() - clicked
        await page.locator(IDLE).wait_for(timeout=300_000)  # the script run has ended
        done = time.perf_counter() - clicked
        errors = await page.locator("[data-testid='stException'], [data-testid='stAlertContentError']").count()
        if k == 0:
            await check_whole_set(page, WHOLE_SET in ticks)
        out.append({"heatmaps_s": drawn, "done_s": done, "errors": errors} | ({"form_s": form_s, "open_s": open_s} if k == 0 else {}))
    if start is not None:
        await start.wait()
    await context.close()
    return out


async def check_whole_set(page, wanted: bool) -> None:
    """The page shows the whole set's verdicts if and only if the run asked for them."""
    says = page.get_by_text("whole set says")
    if wanted:
        try:
            await says.first.wait_for(timeout=30_000)
        except Exception as err:
            shown = await page.locator("[data-testid='stCaptionContainer']").all_inner_texts()
            raise RuntimeError(f"the whole set's verdicts are missing; the page says: {shown}") from err
    elif await says.count():
        raise RuntimeError("the whole set's verdicts are shown: the box was not unticked")


class ProtocolSession:
    """One auditor without a browser: the probe page over Streamlit's websocket, as its frontend
    drives it (one ``rerun_script`` per submit, carrying the form's widget states)."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.widgets: dict[str, tuple[str, object]] = {}  # label -> (element type, proto)

    async def rerun(self, states: list, marker: str | None = None) -> dict:
        """Send one rerun of the probe page; read until its script run finishes."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ClientState_pb2 import ClientState
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        from streamlit.proto.WidgetStates_pb2 import WidgetStates

        message = BackMsg(rerun_script=ClientState(page_name="probe", widget_states=WidgetStates(widgets=states)))
        start = time.perf_counter()
        await self.ws.send(message.SerializeToString())
        drawn, errors = None, 0
        while True:
            raw = await self.ws.recv()
            forward = ForwardMsg()
            forward.ParseFromString(raw)
            kind = forward.WhichOneof("type")
            if kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                element = forward.delta.new_element
                which = element.WhichOneof("type")
                if which in ("text_area", "text_input", "checkbox", "button"):
                    widget = getattr(element, which)
                    self.widgets[widget.label] = (which, widget)
                errors += which == "exception" or (which == "alert" and element.alert.format == element.alert.ERROR)
                if marker and drawn is None and which in ("html", "markdown") and marker.encode() in raw \
                        and b"<span title" in raw:  # fmt: skip
                    drawn = time.perf_counter() - start
            if kind == "script_finished" and forward.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return {"heatmaps_s": drawn, "done_s": time.perf_counter() - start, "errors": errors}

    def submit(self, text: str, ticks: tuple[str, ...]) -> list:
        """The form's widget states as the frontend sends them when "Score" is pressed."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        states = []
        for label, (which, widget) in self.widgets.items():
            if not widget.form_id:
                continue
            state = WidgetState(id=widget.id)
            if which == "text_area":
                state.string_value = text
            elif which == "text_input":
                state.string_value = ""
            elif which == "checkbox":
                state.bool_value = label.startswith(ticks) if ticks and label.startswith(BOXES) else (
                    widget.default and not label.startswith(BOXES))
            elif widget.is_form_submitter and label == "Score":
                state.trigger_value = True
            else:
                continue
            states.append(state)
        return states


async def protocol_session(url: str, probes: list[str], ticks: tuple[str, ...] = (),
                           start: StartLine | None = None, think: float = 0.0) -> list[dict]:  # fmt: skip
    from websockets.asyncio.client import connect

    async with connect(url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"],
                       max_size=None, open_timeout=180, ping_interval=None) as ws:  # fmt: skip
        auditor = ProtocolSession(ws)
        opened = await auditor.rerun([])  # the page's first load announces the form's widgets
        if "Score" not in auditor.widgets:
            raise SystemExit(f"the probe page drew no Score button (widgets: {sorted(auditor.widgets)})")
        await asyncio.sleep(think)
        if start is not None:
            await start.wait()
        out = []
        for k, text in enumerate(probes):
            if k == 1 and start is not None:
                await start.wait()
            result = await auditor.rerun(auditor.submit(text, ticks), marker=text.split()[0])
            if result["heatmaps_s"] is None:
                raise SystemExit(f"no heatmap of {text.split()[0]!r} came back from the server")
            out.append(result | ({"open_s": opened["done_s"]} if k == 0 else {}))
        if start is not None:
            await start.wait()
        return out


def p(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def niced_chromium(folder: Path) -> str:
    """Chromium at the lowest CPU priority: the server's work goes first, as when colleagues'
    browsers run on their own machines (here they share the server's 2 cores)."""
    wrapper = folder / "chromium-niced"
    wrapper.write_text(f'#!/bin/sh\nexec nice -n 19 {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


async def measure(url: str, server_pid: int, sessions: int, rounds: int, sizes: list[int], ticks: tuple[str, ...],
                  executable: str = CHROMIUM, client: str = "browser", reduced_motion: bool = False,
                  think: float = 0.0) -> dict:  # fmt: skip
    if client == "protocol":
        def auditor(probes, ticked=ticks, start=None, first=False):
            return protocol_session(url, probes, ticked, start, think if first else 0.0)

        return await timed_sessions(auditor, server_pid, sessions, rounds, sizes, ticks)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])  # fmt: skip

        def auditor(probes, ticked=ticks, start=None, first=False):
            return session(browser, url, probes, ticked, start, reduced_motion, think if first else 0.0)

        figures = await timed_sessions(auditor, server_pid, sessions, rounds, sizes, ticks)
        await browser.close()
    return figures


async def timed_sessions(auditor, server_pid: int, sessions: int, rounds: int, sizes: list[int],
                         ticks: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """A warm-up probe, then one auditor's page: its first probe, ``rounds`` x ``sizes`` probes;
    then ``sessions`` auditors at once: their pages' first probes together, then ``rounds`` each."""
    warm = await auditor([probe(8, "warmup")], tuple(t for t in ticks if t == WHOLE_SET), first=True)  # models load once per server
    first, *one = await auditor([probe(32, "solofirst")] + [probe(n, f"solo{r}x{n}") for r in range(rounds)
                                                            for n in sizes])  # fmt: skip
    start = StartLine(sessions, server_pid)
    many = await asyncio.gather(*[auditor([probe(32, f"s{s}r{r}") for r in range(-1, rounds)], start=start)
                                  for s in range(sessions)])  # fmt: skip
    (*opened, _), (*before, kinds_before), (*after, kinds_after) = start.marks
    firsts = [items[0]["done_s"] for items in many]
    many = [item for items in many for item in items[1:]]
    figures = {"first_form_s": round(warm[0]["form_s"], 2) if "form_s" in warm[0] else None,
               "first_open_s": round(warm[0]["open_s"], 2) if "open_s" in warm[0] else None,
               "first_probe_s": round(warm[0]["done_s"], 2), "open_s_8": round(opened[2] - start.opened, 2),
               "page_first_probe_s_1": round(first["done_s"], 2)}  # fmt: skip
    for n in sizes:  # `one` holds rounds x sizes, in that order
        times = [x["done_s"] for k, x in enumerate(one) if sizes[k % len(sizes)] == n]
        drawn = [x["heatmaps_s"] for k, x in enumerate(one) if sizes[k % len(sizes)] == n]
        figures[f"p50_s_1_{n}tok"] = round(statistics.median(times), 2)
        figures[f"p95_s_1_{n}tok"] = round(p(times, 95), 2)
        figures[f"p50_heatmaps_s_1_{n}tok"] = round(statistics.median(drawn), 2)
    figures["p95_s_1"] = figures["p95_s_1_32tok"]
    figures["p50_s_8"] = round(statistics.median([x["done_s"] for x in many]), 2)
    figures["p95_s_8"] = round(p([x["done_s"] for x in many], 95), 2)
    figures["p50_page_first_s_8"] = round(statistics.median(firsts), 2)
    figures["max_page_first_s_8"] = round(max(firsts), 2)
    figures["errors"] = sum(x["errors"] for x in [first, *one, *many])
    # The browsers share the server's cores here; on a team's own machines they would not.
    server_cpu, machine_cpu, wall = (b - a for a, b in zip(before, after, strict=True))
    figures["cpu_s_8_server"] = round(server_cpu, 1)
    figures["cpu_s_8_other"] = round(machine_cpu - server_cpu, 1)
    figures["wall_s_8"] = round(wall, 1)
    for kind in ("renderers", "compositor", "browser", "driver"):  # of the browsers' CPU, what for
        used = [c - kinds_before.get(pid, (k, 0.0))[1] for pid, (k, c) in kinds_after.items() if k == kind]
        figures[f"cpu_s_8_{kind}"] = round(sum(used), 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1 round, 2 sessions, 8 and 32 tokens")
    parser.add_argument("--run", default=str(ROOT / "data" / "demo-run"))
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--counterfactuals", action="store_true", help="tick the on-demand counterfactual search")
    parser.add_argument("--whole-set", action=argparse.BooleanOptionalAction, default=True,
                        help="the whole equivalent set's verdicts and heatmap row (the page's default: on)")
    parser.add_argument("--client", choices=["browser", "protocol"], default="browser",
                        help="browser: headless Chromium; protocol: Streamlit's websocket, nothing rendered")
    parser.add_argument("--reduced-motion", action="store_true",
                        help="browsers that ask for reduced motion: the dashboard then animates nothing")
    parser.add_argument("--think", type=float, default=0.0,
                        help="seconds the server's first auditor takes to type the first probe after the page opens")
    parser.add_argument("--nice-browsers", action="store_true",
                        help="run Chromium at nice 19, so the server's work goes first (browsers elsewhere)")
    args = parser.parse_args()
    sessions, rounds, sizes = (2, 1, [8, 32]) if args.quick else (args.sessions, args.rounds, [8, 32, 128])
    server, url = serve(args.run)
    try:
        with tempfile.TemporaryDirectory() as folder:
            executable = niced_chromium(Path(folder)) if args.nice_browsers else CHROMIUM
            ticks = tuple(t for t, on in ((COUNTERFACTUALS, args.counterfactuals), (WHOLE_SET, args.whole_set)) if on)
            figures = asyncio.run(measure(url, server.pid, sessions, rounds, sizes, ticks, executable,
                                          args.client, args.reduced_motion, args.think))
        figures["peak_rss_mb"] = round(peak_rss_mb(server.pid), 1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    figures |= {"sessions": sessions, "rounds": rounds, "counterfactuals": args.counterfactuals, "whole_set": args.whole_set,
                "client": args.client, "nice_browsers": args.nice_browsers,
                "reduced_motion": args.reduced_motion, "think_s": args.think,
                "run": Path(args.run).name, "machine": machine()}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

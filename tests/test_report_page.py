"""The report page: one self-contained HTML file, checked in headless Chromium.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (``make
test`` installs them when absent) and fail, saying how to install them, when
they are missing: they are never skipped.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner
from helpers import WAIT, Ctx, IsActive, fails_once, noop
from hypothesis import given
from hypothesis import strategies as st
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

import daguerreo_actors as d
from daguerreo_actors import JobReport, Task
from daguerreo_actors._layout import BAND, DOT_LIMIT, WRAP, layered, layers_of, layout
from daguerreo_actors._report_html import render_html
from daguerreo_actors.cli import main

INSTALL = "install them with: apt-get install -y chromium chromium-driver (make test does this)"
HOSTILE = '<img src=x onerror="window.pwned=1">'
SCRIPTED = "<script>window.pwned=2</script>"


def browser_paths() -> tuple[str, str]:
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing = " and ".join(
            name
            for name, found in (("chromium", chromium), ("chromedriver", driver))
            if found is None
        )
        pytest.fail(f"the report page's browser tests need {missing}: {INSTALL}", pytrace=False)
    return chromium, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1200",
    ):
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    chrome.set_page_load_timeout(60)
    try:
        yield chrome
    finally:
        chrome.quit()


def items(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
    return {"xs": [1, 2, 3]}


def broken(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
    raise ValueError("the <b>bold</b> & the broken")


def job_tasks() -> list[Task]:
    return [
        Task("extract", noop),
        Task(HOSTILE, fails_once(), ["extract"]),
        Task(SCRIPTED, noop, [HOSTILE]),
        Task("items", items, ["extract"]),
        Task("each", noop, ["items"], map_over="xs"),
        Task("load", broken, ["items"], max_retries=1),
        Task("after_load", noop, ["load"]),
    ]


@pytest.fixture(scope="module")
def report() -> JobReport:
    tasks = job_tasks()
    report = JobReport(tasks)
    job = d.run(tasks, listeners=[report], on_failure="continue")
    assert job.get(timeout=WAIT).state.value == "failed"
    assert job.wait_for_listeners(timeout=WAIT)
    return report


@pytest.fixture(scope="module")
def page(report: JobReport, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report.save_html(tmp_path_factory.mktemp("page") / "report.html")


def open_page(browser: WebDriver, path: Path) -> None:
    browser.get(path.as_uri())
    deadline = time.monotonic() + 30
    while browser.execute_script("return document.body && document.body.dataset.ready") is None:
        assert time.monotonic() < deadline, "the page's script never finished"
        time.sleep(0.05)


def test_without_chromium_the_browser_tests_fail_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.delenv("CHROMEDRIVER", raising=False)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium chromium-driver"):
        browser_paths()


# -- the file ----------------------------------------------------------------------------


def test_the_page_is_one_file_that_fetches_nothing(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched
    assert not re.search(r"<(link|img|iframe)\b|\bsrc\s*=|@import|url\(", text.split("<body>")[0])
    assert text.count("<script") == 2  # the data blob and the page's script, nothing else


def test_hostile_names_and_errors_are_escaped_in_the_markup(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert HOSTILE not in text
    assert SCRIPTED not in text
    assert "<b>bold</b>" not in text
    blob = text.split('id="data">')[1].split("</script>")[0]
    assert "<" not in blob
    assert "&" not in blob


def page_data(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text.split('id="data">')[1].split("</script>")[0])
    return data


def test_the_table_shows_the_error_of_a_task_that_did_not_complete_only(page: Path) -> None:
    tasks = {t["name"]: t for t in page_data(page)["tasks"]}
    assert tasks["load"]["error"] == "ValueError: the <b>bold</b> & the broken"
    assert tasks["load"]["state"] == "failed"
    assert tasks[HOSTILE]["state"] == "completed"  # it failed once, then completed
    assert tasks[HOSTILE]["error"] is None
    # The message's repr has a backslash, which escape_controls doubles (as tail and summary do).
    errors = [a["error"] for a in tasks[HOSTILE]["attempts"]]
    assert errors == [r"KeyError: 'first\\nattempt'", None]


def test_a_report_used_as_a_listener_learns_the_jobs_name_and_dependencies() -> None:
    report = JobReport()  # no tasks given
    job = d.run(job_tasks(), listeners=[report], on_failure="continue", name="nightly")
    job.get(timeout=WAIT)
    assert job.wait_for_listeners(timeout=WAIT)
    assert report.name == "nightly"
    assert report.tasks[SCRIPTED].dependencies == (HOSTILE,)
    assert report.critical_path[0] == "extract"
    assert f"<title>Job nightly ({report.job_id[:8]}): failed</title>" in render_html(report)


def test_the_cli_writes_the_page_of_a_journaled_job(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    job = d.run([Task("a", noop), Task("b", noop, ["a"])], journal=journal, name="nightly")
    assert job.get(timeout=WAIT).ok
    out = tmp_path / "out" / "page.html"
    result = CliRunner().invoke(main, ["report", str(journal), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"written to {out}" in result.output
    text = out.read_text(encoding="utf-8")
    assert f"<title>Job nightly ({job.id[:8]}): completed</title>" in text
    assert 'id="n0"' in text
    assert 'id="n1"' in text
    missing = CliRunner().invoke(main, ["report", str(journal), "--job", "ffff", "-o", str(out)])
    assert missing.exit_code == 2
    assert "no job 'ffff'" in missing.output


def test_the_cli_writes_the_page_from_a_debug_log(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    d.configure_logging(json_file=log, level="debug")
    try:
        job = d.run([Task("a", noop), Task("b", fails_once(), ["a"])], name="from-a-log")
        assert job.get(timeout=WAIT).ok
        assert job.wait_for_listeners(WAIT)  # the log entries are written too
    finally:
        # Configuring again with a stream closes the file; then back to the defaults.
        d.configure_logging(json_file=io.StringIO())
        structlog.reset_defaults()
    out = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["report", str(log), "-o", str(out), "--layout", "layered"])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert 'data-layout="layered"' in text
    assert "<title>Job from-a-log (" in text


# -- the layout ---------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> list[list[int]]:
    count = draw(st.integers(1, 60))
    return [
        sorted(draw(st.sets(st.integers(0, node - 1), max_size=3))) if node else []
        for node in range(count)
    ]


@given(dags())
def test_the_layered_layout_puts_every_task_right_of_its_dependencies(
    deps: list[list[int]],
) -> None:
    placed = layered(deps, 8.0, 8.0)
    layer = layers_of(deps)
    for node, node_deps in enumerate(deps):
        for dep in node_deps:
            assert layer[dep] < layer[node]
            assert placed.x[dep] < placed.x[node]
    spots = {(placed.x[n], placed.y[n]) for n in range(len(deps))}
    assert len(spots) == len(deps)  # no two nodes on one spot
    assert all(0 < x < placed.width and 0 < y < placed.height for x, y in spots)


def test_a_layer_taller_than_the_wrap_becomes_side_by_side_columns() -> None:
    placed = layered([[] for _ in range(WRAP * 3)], 8.0, 8.0)
    assert len(set(placed.x)) == 3
    assert len(set(placed.y)) == WRAP


def test_a_long_chain_stacks_its_columns_in_bands() -> None:
    chain = [[node - 1] if node else [] for node in range(BAND * 3)]
    placed = layered(chain, 8.0, 8.0)
    assert len(set(placed.x)) == BAND
    assert len(set(placed.y)) == 3
    assert placed.width < placed.height * BAND  # a block, not a strip
    assert max(placed.x) < placed.width
    assert max(placed.y) < placed.height


def test_dot_lays_out_small_dags_where_installed_and_layered_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if shutil.which("dot") is None:
        pytest.fail("graphviz's dot is needed: apt-get install -y graphviz (make test does this)")
    chain = [[node - 1] if node else [] for node in range(5)]
    assert layout(chain, labels=True).method == "dot"
    placed = layout(chain, labels=True, method="dot")
    assert placed.x == sorted(placed.x)  # left to right
    assert layout([[] for _ in range(DOT_LIMIT + 1)], labels=False).method == "layered"
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    assert layout(chain, labels=True).method == "layered"
    with pytest.raises(RuntimeError, match="apt install graphviz"):
        layout(chain, labels=True, method="dot")
    with pytest.raises(ValueError, match="layout must be 'auto', 'dot' or 'layered'"):
        layout(chain, labels=True, method="spring")


# -- in the browser -----------------------------------------------------------------------


def texts(browser: WebDriver, selector: str) -> list[str]:
    script = "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)"
    found: list[str] = browser.execute_script(script, selector)
    return found


def test_every_task_appears_in_the_dag_the_timeline_and_the_table(
    browser: WebDriver, page: Path, report: JobReport
) -> None:
    open_page(browser, page)
    names = list(report.tasks)
    assert "each[2]" in names
    dag_names = [t.split(" (")[0] for t in texts(browser, "#dag .node > title")]
    assert dag_names == [n for n in names if not n.startswith("each[")]  # children: in "each"
    assert texts(browser, "#dag #n4 > title") == ["each (3 mapped children)"]
    ran = {n for n, t in report.tasks.items() if t.attempts}
    bars = browser.execute_script(
        "return [...document.querySelectorAll('#timeline .bar')].map(e => Number(e.dataset.i))"
    )
    assert {names[i] for i in bars} == ran
    assert sorted(texts(browser, "#tasks tbody tr:not(.pad) td:first-child")) == sorted(names)
    assert browser.execute_script("return document.querySelector('#dag').dataset.layout") in (
        "dot",
        "layered",
    )


def test_clicking_a_task_highlights_it_in_all_three_and_shows_its_attempts_and_error(
    browser: WebDriver, page: Path, report: JobReport
) -> None:
    open_page(browser, page)
    load = list(report.tasks).index("load")
    browser.find_element(By.CSS_SELECTOR, f"#dag #n{load}").click()
    assert browser.find_element(By.CSS_SELECTOR, f"#n{load}").get_attribute("class").endswith("sel")
    selected_bars = browser.find_elements(By.CSS_SELECTOR, "#timeline .bar.sel")
    assert len(selected_bars) == 2  # two attempts, both marked
    [row] = browser.find_elements(By.CSS_SELECTOR, "#tasks tbody tr.sel")
    assert row.find_element(By.CSS_SELECTOR, "td").text == "load"
    detail = browser.find_element(By.ID, "detail")
    assert detail.is_displayed()
    assert "load: failed" in detail.text
    assert detail.text.count("ValueError: the <b>bold</b> & the broken") == 2
    # From the table: the row's task is selected in the DAG, the old one no longer.
    extract = browser.find_element(By.XPATH, "//tbody/tr/td[text()='extract']")
    extract.click()
    assert browser.find_element(By.ID, "n0").get_attribute("class").endswith("sel")
    assert not browser.find_elements(By.CSS_SELECTOR, f"#n{load}.sel")
    assert "extract: completed" in browser.find_element(By.ID, "detail").text
    # A mapped child, from the timeline: its parent is what the DAG marks.
    child = list(report.tasks).index("each[1]")
    browser.find_element(By.CSS_SELECTOR, f'#timeline .bar[data-i="{child}"]').click()
    assert browser.find_element(By.ID, "n4").get_attribute("class").endswith("sel")
    assert "each[1]: completed" in browser.find_element(By.ID, "detail").text


def test_a_hostile_task_name_renders_as_text_and_runs_nothing(
    browser: WebDriver, page: Path
) -> None:
    open_page(browser, page)
    assert browser.execute_script("return window.pwned === undefined")
    cells = texts(browser, "#tasks tbody td:first-child")
    assert HOSTILE in cells
    assert SCRIPTED in cells
    assert not browser.find_elements(By.CSS_SELECTOR, "body img, #tasks script, #dag script")
    hostile = browser.find_element(By.XPATH, f"//tbody/tr/td[text()='{HOSTILE}']")
    hostile.click()
    assert HOSTILE in browser.find_element(By.ID, "detail").text
    assert browser.execute_script("return window.pwned === undefined")


def test_clicking_a_column_header_sorts_the_table_and_again_reverses_it(
    browser: WebDriver, page: Path
) -> None:
    open_page(browser, page)
    header = browser.find_element(By.CSS_SELECTOR, 'th[data-key="name"]')
    header.click()
    names = texts(browser, "#tasks tbody tr:not(.pad) td:first-child")
    assert names == sorted(names)
    header.click()
    assert texts(browser, "#tasks tbody tr:not(.pad) td:first-child") == sorted(names)[::-1]
    browser.find_element(By.CSS_SELECTOR, 'th[data-key="attempts"]').click()
    attempts = [int(t) for t in texts(browser, "#tasks tbody tr:not(.pad) td:nth-child(3)")]
    assert attempts == sorted(attempts)


def test_a_ten_thousand_task_page_is_under_10_mb_and_renders_every_task(
    browser: WebDriver, tmp_path: Path
) -> None:
    tasks = [Task(f"t{i}", noop, [f"t{i // 2}"] if i else []) for i in range(10_000)]
    report = JobReport(tasks)
    job = d.run(tasks, listeners=[report], max_concurrency=8)
    assert job.get(timeout=WAIT).ok
    assert job.wait_for_listeners(timeout=WAIT)
    path = report.save_html(tmp_path / "big.html")
    assert path.stat().st_size < 10 * 2**20
    began = time.monotonic()
    open_page(browser, path)
    assert time.monotonic() - began < 30  # generous: the 3 s figure is measured in make bench
    count = "return document.querySelectorAll(arguments[0]).length"
    assert browser.execute_script(count, "#dag .node") == 10_000
    assert browser.execute_script(count, "#timeline .bar") == 10_000
    # The table holds only the rows in view; scrolled to the end, the last ones.
    assert browser.execute_script(count, "#tasks tbody tr:not(.pad)") < 200
    browser.execute_script("const b = document.getElementById('table-box'); b.scrollTop = 1e9")
    deadline = time.monotonic() + 10
    while "t9999" not in texts(browser, "#tasks tbody td:first-child"):
        assert time.monotonic() < deadline, "the table never showed its last row"
        time.sleep(0.05)


def test_the_critical_path_highlights_only_its_own_edges() -> None:
    def slow(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        time.sleep(0.02)
        return {}

    tasks = [Task("a", noop), Task("b", slow, ["a"]), Task("c", noop, ["a", "b"])]
    report = JobReport()
    job = d.run(tasks, listeners=[report])
    assert job.get(timeout=WAIT).ok
    assert job.wait_for_listeners(timeout=WAIT)
    assert report.critical_path == ["a", "b", "c"]
    text = render_html(report, layout_method="layered")
    hot = text.split('class="edges crit" d="')[1].split('"')[0]
    assert hot.count("M") == 2  # a -> b and b -> c, not the edge a -> c


def test_long_errors_keep_every_row_one_line_and_a_click_never_scrolls_the_window(
    browser: WebDriver, tmp_path: Path
) -> None:
    def verbose(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        raise ValueError("a long story " * 40)

    tasks = [Task(f"t{i:03}", verbose, max_retries=0) for i in range(300)]
    report = JobReport()
    job = d.run(tasks, listeners=[report], on_failure="continue")
    assert job.get(timeout=WAIT).state.value == "failed"
    assert job.wait_for_listeners(timeout=WAIT)
    path = report.save_html(tmp_path / "errors.html")
    open_page(browser, path)
    heights = browser.execute_script(
        "return [...document.querySelectorAll('#tasks tbody tr:not(.pad)')]"
        ".map(r => r.getBoundingClientRect().height)"
    )
    assert heights
    assert max(heights) <= 25
    # The table in the window's view first, so the click itself scrolls nothing.
    browser.execute_script(
        "document.getElementById('table-box').scrollIntoView();"
        "document.getElementById('table-box').scrollTop = 1e9"
    )
    deadline = time.monotonic() + 10
    while "t299" not in texts(browser, "#tasks tbody td:first-child"):
        assert time.monotonic() < deadline, "the table never showed its last row"
        time.sleep(0.05)
    before = browser.execute_script("return window.scrollY")
    # A DOM click: webdriver's own click would scroll the row into view first.
    browser.execute_script(
        "[...document.querySelectorAll('#tasks tbody td')]"
        ".find(td => td.textContent === 't299').click()"
    )
    assert browser.execute_script("return window.scrollY") == before
    assert "a long story" in browser.find_element(By.ID, "detail").text

"""A real browser opens the course as a student does: the start page, then a lecture that
runs top to bottom (quick mode) and a slider that redraws its figure, then the lecture's
exercise next to it (a tab of its own name), run as handed out.

Needs Chromium, its driver and Selenium (Debian: ``apt-get install chromium chromium-driver``;
``.ci/run`` installs them when it runs as root). Elsewhere the test is skipped, with the
reason in the summary line.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LECTURE = "lectures/02_elbo.ipynb"  # the cheapest lecture with a slider
EXERCISE = "exercises/ex02_elbo.ipynb"  # its exercise
CHROMIUM = next(filter(None, map(shutil.which, ["chromium", "chromium-browser", "google-chrome"])), None)
DRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401
except ImportError:
    selenium = None

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER and selenium),
    reason="browser smoke test needs Chromium, chromedriver and selenium "
           "(apt-get install chromium chromium-driver; pip install selenium)")

spec = importlib.util.spec_from_file_location("_course_for_browser", ROOT / "course.py")
course = importlib.util.module_from_spec(spec)
spec.loader.exec_module(course)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, condition, timeout: float, interval: float = 0.25):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a fresh student workspace, with the options `course.py lab` uses."""
    tmp = tmp_path_factory.mktemp("lab")
    workspace = tmp / "my-work"
    course.sync_workspace(ROOT, workspace)
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "user-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"))
    env.setdefault("DLSTUDIO_LITE_QUICK", "1")
    env.pop("MPLBACKEND", None)  # kernels draw with the inline backend, as a student's do
    cmd = [sys.executable, "-m", "jupyterlab", *course.lab_arguments(workspace), "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "lab.log", "w")
    server = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def api(path: str):
        request = urllib.request.Request(base + path, headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def up():
        try:
            return api("/api/status")
        except OSError:
            assert server.poll() is None, (tmp / "lab.log").read_text()[-3000:]
            return None

    try:
        wait_for("JupyterLab to start", up, timeout=90)
        yield {"url": base, "token": token, "api": api, "workspace": workspace}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def js(driver, body: str):
    return driver.execute_script(body)


CURRENT = "const app = window.jupyterapp; const w = app && app.shell.currentWidget;"


def test_lab_opens_on_the_start_page_without_news_or_twins(lab, browser):
    browser.get(f"{lab['url']}/?token={lab['token']}")  # the server's default URL, as `course.py lab` opens
    heading = wait_for("the rendered start page", lambda: js(browser, """
        const h = document.querySelector('.jp-RenderedMarkdown h1'); return h && h.textContent;"""), 60)
    assert heading.startswith("Start here")
    listed = {item["name"] for item in lab["api"]("/api/contents/lectures")["content"]}
    assert listed == {p.name for p in (ROOT / "lectures").glob("*.ipynb")}, "each lecture once, as a notebook"
    notification = lab["api"]("/lab/api/settings/@jupyterlab/apputils-extension:notification")
    # the course's overrides.json is the default, so JupyterLab never asks about news
    assert notification["schema"]["properties"]["fetchNews"]["default"] == "false"
    time.sleep(1)
    toasts = js(browser, "return [...document.querySelectorAll('.Toastify__toast')].map(t => t.textContent)")
    assert not [t for t in toasts if "news" in t.lower()], toasts


def test_a_lecture_runs_in_the_browser_and_its_slider_redraws(lab, browser):
    from selenium.webdriver.common.keys import Keys

    source = ROOT / LECTURE
    source_hash = hashlib.sha256(source.read_bytes()).hexdigest()
    browser.get(f"{lab['url']}/lab/tree/{LECTURE}?token={lab['token']}")
    wait_for("the kernel", lambda: js(browser, CURRENT + """
        const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
        return k && k.status === 'idle' && w.context.path.endsWith('02_elbo.ipynb');"""), 90)
    assert js(browser, CURRENT + "return w.context.model.dirty") is False, "opens with unsaved changes"

    started = time.monotonic()
    js(browser, CURRENT + "app.commands.execute('notebook:run-all-cells');")
    state = wait_for("every cell to run", lambda: js(browser, CURRENT + """
        const cells = w.content.widgets.filter(c => c.model.type === 'code');
        const done = cells.every(c => c.model.executionCount !== null)
            && w.sessionContext.session.kernel.status === 'idle';
        const errors = cells.filter(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'))
            .map(c => c.model.sharedModel.getSource().slice(0, 80));
        return (done || errors.length) && {errors: errors, cells: cells.length};"""), 240)
    print(f"{LECTURE}: {state['cells']} cells ran in {time.monotonic() - started:.1f} s")
    assert state["errors"] == []

    slider = wait_for("the slider", lambda: browser.find_elements("css selector", ".jp-OutputArea .noUi-handle"), 30)[0]
    labels = js(browser, """return [...document.querySelectorAll('.jp-OutputArea .widget-slider .widget-label')]
        .map(l => [l.textContent, l.scrollWidth <= l.clientWidth]);""")
    assert labels and all(full for _, full in labels), f"cut-off labels: {labels}"
    picture = """const cell = document.querySelector('.jp-OutputArea .noUi-handle').closest('.jp-Cell');
        const img = cell.querySelector('.jp-RenderedImage img'); return img && img.src;"""
    before = wait_for("the figure", lambda: js(browser, picture), 30)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", slider)
    slider.click()
    slider.send_keys(Keys.ARROW_RIGHT)
    wait_for("the figure to be redrawn", lambda: js(browser, picture) not in (None, before), 30)

    js(browser, CURRENT + "app.commands.execute('docmanager:save');")
    wait_for("the save", lambda: js(browser, CURRENT + "return !w.context.model.dirty"), 30)
    saved = json.loads((lab["workspace"] / LECTURE).read_text())
    assert any("image/png" in out.get("data", {}) for c in saved["cells"] for out in c.get("outputs", []))
    assert hashlib.sha256(source.read_bytes()).hexdigest() == source_hash, "the course's own file changed"
    assert not (lab["workspace"] / LECTURE).with_suffix(".py").exists()


def test_an_exercise_opens_next_to_its_lecture_and_runs_unanswered(lab, browser):
    """Two tabs that say which is which, and Run All on the blank exercise: no error, no stray
    value, and every check says which question is not answered yet."""
    browser.get(f"{lab['url']}/lab/tree/{LECTURE}?token={lab['token']}")
    wait_for("the lecture", lambda: js(browser, CURRENT + f"return w && w.context && w.context.path === '{LECTURE}';"), 90)
    js(browser, f"window.jupyterapp.commands.execute('docmanager:open', {{path: '{EXERCISE}', options: {{mode: 'split-right'}}}});")
    find = f"const w = Array.from(window.jupyterapp.shell.widgets('main')).find(x => x.context && x.context.path === '{EXERCISE}');"
    wait_for("the exercise's kernel", lambda: js(browser, find + """
        const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
        return k && k.status === 'idle';"""), 90)
    tabs = js(browser, "return [...document.querySelectorAll('.lm-DockPanel-tabBar .lm-TabBar-tabLabel')].map(t => t.textContent);")
    assert Path(LECTURE).name in tabs and Path(EXERCISE).name in tabs, tabs
    assert len(set(tabs)) == len(tabs), f"two tabs with the same title: {tabs}"

    js(browser, find + "window.jupyterapp.shell.activateById(w.id);")
    wait_for("the exercise in front", lambda: js(browser, CURRENT + f"return w && w.context.path === '{EXERCISE}';"), 30)
    # Aimed at the exercise by its id: with no id the command acts on the notebook that last had
    # focus, which can still be the lecture (one fresh-clone run timed out waiting here).
    js(browser, find + "window.jupyterapp.commands.execute('notebook:run-all-cells', {widgetId: w.id});")
    cells = wait_for("every exercise cell to run", lambda: js(browser, find + """
        const cells = w.content.widgets.filter(c => c.model.type === 'code');
        const done = cells.every(c => c.model.executionCount !== null) && w.sessionContext.session.kernel.status === 'idle';
        return done && cells.map(c => ({tags: c.model.getMetadata('tags') || [],
                                         outputs: c.model.outputs.toJSON()}));"""), 120)
    for i, cell in enumerate(cells):
        kinds = [o["output_type"] for o in cell["outputs"]]
        text = "".join("".join(o.get("text", "")) for o in cell["outputs"])
        assert kinds in ([], ["stream"]), f"code cell {i}: {kinds} (a traceback or a stray value): {cell['outputs']}"
        if "raises-exception" in cell["tags"]:      # a check, or a cell that uses the answers
            assert "is not answered yet: fill in" in text, f"code cell {i} printed {text!r}"
        else:
            assert text == "", f"code cell {i} printed {text!r}"

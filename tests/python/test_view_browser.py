"""The viewer in a real browser: headless Chromium (Debian's package, driven over the DevTools
pipe by viewer/cdp.py, standard library only) with networking cut off loads the page of a small
run and of an ensemble: no console errors or exceptions, no request other than the page itself,
the 3-D canvas is not blank (pixel statistics of a screenshot), and moving the time slider or
choosing another system changes the drawn picture."""
import io
import os
import sys
import time

import numpy as np
import pytest
from conftest import SOURCE_DIR

sys.path.insert(0, str(SOURCE_DIR / "viewer"))
import cdp  # noqa: E402

RUN = """
[measure]
n = 40
d = 3
seed = 11
[model]
kind = "sa"
beta = 6.0
[integrate]
method = "euler"
dt = 0.1
t_end = 6.0
[observe]
every = 0.5
delta = 0.05
"""


def pixels(png):
    from matplotlib.image import imread

    return imread(io.BytesIO(png), format="png")[:, :, :3]  # floats in [0, 1]


def nonblank(img):
    """Pixel statistics of a drawn scene. Measured on the 40-token page: std 0.04, 2.7% non-white
    pixels, 0.3% colored; the same page with its WebGL canvas hidden: std 0.009, 0.2% non-white
    (the axis labels), 0 colored."""
    return img.std() > 0.02 and np.mean(img.min(axis=2) < 0.9) > 0.01 and colored_fraction(img) > 0.0005


def colored_fraction(img):
    """Fraction of pixels that are saturated colors (tokens, trails), not white/gray background
    or wireframe: max channel - min channel > 0.25."""
    return float(np.mean(img.max(axis=2) - img.min(axis=2) > 0.25))


@pytest.fixture(scope="module")
def browser():
    if not cdp.find_chromium():
        pytest.fail("chromium not found: scripts/install-deps.sh installs Debian's chromium")
    b = cdp.Browser(width=1400, height=900, offline=True)
    yield b
    b.close()


def make(run_cli, tmp_path, name, sets=()):
    cfg = tmp_path / "c.toml"
    cfg.write_text(RUN)
    out = tmp_path / name
    args = ["run", cfg, "--out", out, "--no-plots", "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert run_cli(*args).returncode == 0
    r = run_cli("view", out)
    assert r.returncode == 0, r.stderr
    return out / "view.html"


def load(b, page):
    b.requests.clear()
    start = len(b.events)
    b.open(str(page))
    b.wait_for("window.attnflowViewer && window.attnflowViewer.ready")
    return start


def scene_shot(b):
    rect = b.eval("(() => { const r = document.getElementById('scene').getBoundingClientRect();"
                  " return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")
    assert rect["width"] > 300 and rect["height"] > 300
    return pixels(b.screenshot(clip=rect))


def redraw(b, action):
    drawn = b.eval("window.attnflowViewer.drawn")
    b.eval(action)
    b.wait_for(f"window.attnflowViewer.drawn > {drawn} && !window.attnflowViewer.busy")


def check_clean(b, start, page, viewer=True):
    errors = b.errors(start)
    assert errors == [], errors
    if viewer:
        assert b.eval("window.attnflowViewer.errors.length") == 0
        assert b.eval("document.getElementById('error').textContent") == ""
    # Offline: the only request is the page itself (data: URLs are inline).
    others = [u for u in b.requests if not u.startswith(("data:", "about:")) and u != "file://" + str(page)]
    assert others == [], others


def test_small_run_page_draws_and_the_slider_moves_the_tokens(browser, run_cli, tmp_path):
    page = make(run_cli, tmp_path, "small")
    start = load(browser, page)
    assert browser.eval("window.attnflowViewer.frames()") == 13
    # Last frame: tokens gathered into clusters.
    redraw(browser, "window.attnflowViewer.setFrame(12)")
    last = scene_shot(browser)
    assert nonblank(last), "scene is blank"
    # Move the slider as a user does (value + input event): frame 0, tokens spread out.
    redraw(browser, "(() => { const s = document.getElementById('slider'); s.value = 0;"
                    " s.dispatchEvent(new Event('input')); })()")
    assert browser.eval("window.attnflowViewer.frame") == 0
    assert browser.eval("document.getElementById('time').textContent").startswith("t = 0")
    first = scene_shot(browser)
    changed = np.mean(np.abs(first - last).max(axis=2) > 0.1)
    assert changed > 0.001, f"slider did not change the picture ({changed:.5f} of the pixels)"
    # The observable plots are drawn with a cursor at the current time.
    assert browser.eval("document.querySelectorAll('#obs-clusters .main-svg').length") > 0
    assert browser.eval("document.getElementById('obs-energy').layout.shapes[0].x0") == 0
    assert browser.eval("document.getElementById('obs-clusters').layout.yaxis.type") == "log"
    check_clean(browser, start, page)


def test_ensemble_page_switches_systems(browser, run_cli, tmp_path):
    page = make(run_cli, tmp_path, "ens", sets=["measure.systems=3"])
    start = load(browser, page)
    assert browser.eval("window.attnflowViewer.entries") == 3
    assert browser.eval("document.getElementById('entry-label').hidden") is False
    redraw(browser, "window.attnflowViewer.setFrame(12)")
    a = scene_shot(browser)
    assert nonblank(a)
    redraw(browser, "(() => { const s = document.getElementById('entry'); s.value = '2';"
                    " s.dispatchEvent(new Event('change')); })()")
    assert browser.eval("window.attnflowViewer.entry") == 2
    b = scene_shot(browser)
    assert nonblank(b)
    assert np.mean(np.abs(a - b).max(axis=2) > 0.1) > 0.001, "another system drew the same picture"
    # Play runs through the frames to the end, then stops.
    redraw(browser, "window.attnflowViewer.setFrame(9)")
    browser.eval("window.attnflowViewer.play(true)")
    browser.wait_for("window.attnflowViewer.frame === 12 && !window.attnflowViewer.busy", timeout=30)
    check_clean(browser, start, page)


def test_circle_page_draws(browser, run_cli, tmp_path):
    page = make(run_cli, tmp_path, "circle", sets=["measure.d=2"])
    start = load(browser, page)
    redraw(browser, "window.attnflowViewer.setFrame(12)")
    img = scene_shot(browser)
    assert nonblank(img)
    check_clean(browser, start, page)


def test_jupyter_iframe_markup_draws(browser, run_cli, tmp_path):
    # What attnflow.view(dir) displays in a notebook: an iframe whose srcdoc is the page
    # (sandboxed: scripts only). It must draw inside the iframe, offline, without errors.
    from attnflow import view

    page = make(run_cli, tmp_path, "nb")
    host = tmp_path / "notebook.html"
    host.write_text("<!DOCTYPE html><html><body style='margin:0'>" + view.show(str(page.parent), height=700)
                    + "</body></html>")
    browser.requests.clear()
    start = len(browser.events)
    browser.open(str(host))
    rect = browser.eval("(() => { const r = document.querySelector('iframe').getBoundingClientRect();"
                        " return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")
    assert rect["height"] == 700
    deadline = time.monotonic() + 60
    while True:
        img = pixels(browser.screenshot(clip=rect))
        if nonblank(img) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert nonblank(img), "the viewer inside the notebook iframe drew nothing"
    check_clean(browser, start, host, viewer=False)


def test_click_on_an_observable_plot_moves_the_time(browser, run_cli, tmp_path):
    page = make(run_cli, tmp_path, "click")
    start = load(browser, page)
    redraw(browser, "window.attnflowViewer.setFrame(0)")
    # Click the mean-cosine plot three quarters of the way along its time axis (t in [0, 6]).
    box = browser.eval("(() => { const r = document.querySelector('#obs-cosine .nsewdrag').getBoundingClientRect();"
                       " return {x: r.x + 0.75 * r.width, y: r.y + 0.5 * r.height}; })()")
    drawn = browser.eval("window.attnflowViewer.drawn")
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        browser.call("Input.dispatchMouseEvent", {"type": kind, "x": box["x"], "y": box["y"], "button": "left",
                                                  "clickCount": 1}, session=True)
        time.sleep(0.3)  # plotly throttles hover, and a click needs the hovered point
    browser.wait_for(f"window.attnflowViewer.drawn > {drawn} && !window.attnflowViewer.busy")
    frame = browser.eval("window.attnflowViewer.frame")
    assert 7 <= frame <= 11, frame  # t = 4.5 is frame 9 (observations every 0.5)
    assert browser.eval("document.getElementById('slider').value") == str(frame)
    check_clean(browser, start, page)

"""The run report in a real browser: headless Chromium opens `index.html` of a real trained run.

Chromium is driven with its own command line, no Python package: `--dump-dom` of a copy of the page with a
small script added that writes its measurements into the DOM once the page has loaded (every image's
`naturalWidth` and drawn size, the page's `scrollWidth` against the window), and `--screenshot` for a
picture of the whole page (saved as `report/screenshot.png`, next to the report). Chromium comes from
Debian (`apt-get install chromium`, which `.ci/run` does); `TFL_CHROMIUM` names another binary.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

WIDTH = 1200  # px: the window the page must fit without sideways scrolling
# Offline and quiet: without the background-networking flags Chromium tries to reach Google, and as root it
# needs --no-sandbox.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio")
# Runs in the page after every image has loaded (or failed to) and writes what it measured into the DOM.
PROBE = """<script>addEventListener("load", () => {
  const root = document.documentElement;
  const out = {innerWidth: window.innerWidth, clientWidth: root.clientWidth, scrollWidth: root.scrollWidth,
               scrollHeight: root.scrollHeight, images: [...document.images].map(i => ({
                 src: i.getAttribute("src"), complete: i.complete, naturalWidth: i.naturalWidth,
                 naturalHeight: i.naturalHeight, width: i.clientWidth, height: i.clientHeight,
                 right: i.getBoundingClientRect().right}))};
  const pre = document.createElement("pre");
  pre.id = "tfl-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""


def _chromium() -> str:
    found = os.environ.get("TFL_CHROMIUM") or next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if not found:
        pytest.fail("this test needs headless Chromium: apt-get install chromium (or set TFL_CHROMIUM)")
    return found


def _run_chromium(profile, *args) -> str:
    proc = subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def measure(report_dir, profile, width=WIDTH, height=900) -> dict:
    """Loads the report (a copy beside it with PROBE added, so the images resolve the same) and measures it."""
    with open(os.path.join(report_dir, "index.html"), encoding="utf-8") as f:
        page = f.read()
    assert page.count("</body>") == 1
    probe = os.path.join(report_dir, f".probe-{os.getpid()}.html")
    with open(probe, "w", encoding="utf-8") as f:
        f.write(page.replace("</body>", PROBE + "</body>"))
    try:
        dom = _run_chromium(profile, f"--window-size={width},{height}", "--dump-dom", f"file://{probe}")
    finally:
        os.remove(probe)
    found = re.search(r'<pre id="tfl-probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run; the DOM ends with:\n{dom[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def screenshot(report_dir, profile, height) -> str:
    """The whole page at WIDTH px in one PNG (the window as tall as the page), saved beside the report."""
    path = os.path.join(report_dir, "screenshot.png")
    _run_chromium(profile, f"--window-size={WIDTH},{min(height, 16000)}", "--hide-scrollbars",
                  f"--screenshot={path}", f"file://{os.path.join(report_dir, 'index.html')}")
    return path


def check_page(report_dir, profile, min_images=3) -> dict:
    """Every image loaded and drawn with its proportions, and nothing wider than a 1200 px window."""
    m = measure(report_dir, profile)
    with open(os.path.join(report_dir, "index.html"), encoding="utf-8") as f:
        sources = re.findall(r'<img src="([^"]+)"', f.read())
    assert m["innerWidth"] == WIDTH
    assert [i["src"] for i in m["images"]] == sources and len(sources) >= min_images
    for image in m["images"]:
        assert image["complete"] and image["naturalWidth"] > 0 and image["naturalHeight"] > 0, \
            f"{image['src']} did not load: {image}"
        # Drawn at its own proportions (an image squeezed into the column must not be stretched or squashed).
        natural, drawn = image["naturalWidth"] / image["naturalHeight"], image["width"] / image["height"]
        assert abs(drawn / natural - 1) < 0.02, f"{image['src']} drawn {image['width']}x{image['height']}"
        assert image["right"] <= m["clientWidth"], f"{image['src']} sticks out of the window: {image}"
    assert m["scrollWidth"] <= m["clientWidth"], (
        f"the page scrolls sideways at {WIDTH} px: {m['scrollWidth']} px wide for {m['clientWidth']} px")
    return m


@pytest.fixture(scope="module")
def report_dir(trained_run):
    folder = os.path.join(trained_run.run_dir, "report")
    assert os.path.isfile(os.path.join(folder, "index.html")), "training did not write its report"
    return folder


def test_the_report_of_a_real_run_loads_and_fits_a_1200px_window(report_dir, tmp_path):
    m = check_page(report_dir, tmp_path / "profile")
    shot = screenshot(report_dir, tmp_path / "profile", m["scrollHeight"] + 50)
    with Image.open(shot) as im:
        assert im.width == WIDTH and im.height >= m["scrollHeight"]
        # The page drawn, not a blank or an error page: its images are in the picture.
        assert len(im.convert("RGB").getcolors(1 << 20) or ()) > 1000


def test_long_unbroken_paths_do_not_widen_the_page(trained_run, hymenoptera, tmp_path):
    """The same run scored through a folder with a 150-character name: paths in the tables wrap."""
    import tfl

    long_name = "hymenoptera_data_seen_through_a_folder_name_without_any_place_to_break_a_line" * 2
    link = tmp_path / long_name
    os.symlink(hymenoptera, link)
    page = tfl.report(trained_run.run_dir, str(tmp_path / "report"), data=f"folder:{link}")
    with open(page, encoding="utf-8") as f:
        assert long_name in f.read()  # the summary and the hyperparameters show the path
    check_page(os.path.dirname(page), tmp_path / "profile")


def test_a_search_page_with_a_wide_trials_table_fits(tmp_path):
    """Twelve hyperparameters make the trials table wider than the window: it scrolls in its own box."""
    from tfl.reports.report import report_search

    names = [f"stage2_hyperparameter_number_{k}" for k in range(12)]
    trials = [{"trial_id": f"{t:02d}", "score": 0.5 + t / 100,
               "hyperparameters": {n: (t + k) / 10 for k, n in enumerate(names)}} for t in range(6)]
    page = report_search(trials, str(tmp_path / "report"))
    check_page(os.path.dirname(page), tmp_path / "profile", min_images=1)

"""The web app (``python -m inpaint.app``) through its real command: by API with ``gradio_client``, and in a real
browser (Chromium from Debian's packages, driven by Playwright). Skipped, with the reason, where Gradio, Playwright
or Chromium is missing; ``make test`` installs the first two and ``.ci/run`` the browser."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_GUARD_S, run_cli, tiny, write_photos
from PIL import Image

from inpaint.predict import predict

pytest.importorskip("gradio", reason="the web app needs the app extra: pip install -e '.[app]'")
gradio_client = pytest.importorskip("gradio_client", reason="the API test needs gradio_client (the app extra)")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("app")]

#: the browser: INPAINT_CHROMIUM, else Debian's chromium on PATH
CHROMIUM = os.environ.get("INPAINT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Two tiny trained runs (the real configs, in process): an SC-NN (one procedure) and a Pixel CNN (argmax /
    sample / mean, a temperature: the seeded, stochastic case)."""
    import torch
    from hydra import compose, initialize_config_dir

    from inpaint.config_dir import CONF_DIR
    from inpaint.run import run

    root = tmp_path_factory.mktemp("app_runs")
    photos = root / "photos"
    write_photos(photos, 6, size=(40, 40))
    data = ["data=folder", f"data.root={photos}", "logger=none", "eval.grid_samples=0"]
    for name, extra in (("scnn", ["model=scnn", *tiny("scnn")]),
                        ("pixelcnn", ["model=pixelcnn", *tiny("pixelcnn"), "model.net.width=8"])):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[*extra, *data, f"paths.output_dir={root / 'runs' / name}"])
        torch.manual_seed(0)
        run(cfg)
    return root / "runs"


@pytest.fixture(scope="module")
def app_url(runs):
    """The app served by its command on a free port; stopped at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "inpaint.app", f"runs={runs}", f"port={port}"], cwd=runs,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("inpaint app: http"):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(HANG_GUARD_S)
    assert proc.poll() is None, "".join(lines)
    yield f"http://127.0.0.1:{port}/", lines
    proc.terminate()
    proc.wait(HANG_GUARD_S)


#: the label each run starts with: its card's model name (the class, for runs composed in process)
LABEL = {"biharmonic": "biharmonic", "scnn": "SCNNModule", "pixelcnn": "DensityModule"}


def _method(lines: list[str], name: str) -> str:
    name = LABEL[name]
    listed = next(ln for ln in lines if ln.startswith("methods: ")).removeprefix("methods: ").strip()
    return next(m for m in listed.split(", ") if m.startswith(name))


def _photo_and_mask(tmp_path: Path, h: int = 90, w: int = 120) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    photo = write_photos(tmp_path / "in", 1, size=(h, w), seed=7)[0]
    mask = np.zeros((h, w), np.uint8)
    mask[20:45, 30:70] = 255
    mask[60:70, 90:100] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return photo, tmp_path / "mask.png", np.asarray(Image.open(photo).convert("RGB")), mask > 127


@pytest.mark.parametrize("name,procedure,options,seed,strategy,by", [
    ("biharmonic", "", "{}", 0, "crop", "function"),
    ("scnn", "", "{}", 0, "crop", "function"),
    ("scnn", "", "{}", 0, "resize", "function"),
    ("pixelcnn", "sample", '{"temperature": 0.7}', 5, "crop", "command"),
])
def test_api_fill_equals_predict(app_url, runs, make_cfg, tmp_path, name, procedure, options, seed, strategy, by):
    """The API's PNG is predict's, byte for byte: through the ``inpaint.predict`` command for the seeded sampling
    case, through its function (the same composed config, no process start) for the others."""
    url, lines = app_url
    photo, mask_path, rgb, hole = _photo_and_mask(tmp_path)
    label = _method(lines, name)
    client = gradio_client.Client(url, verbose=False)
    png, seconds = client.predict(gradio_client.handle_file(str(photo)), gradio_client.handle_file(str(mask_path)),
                                  label, procedure, options, seed, strategy, api_name="/inpaint")
    got = Path(png).read_bytes()
    out = np.asarray(Image.open(io.BytesIO(got)))
    assert seconds > 0 and (out[~hole] == rgb[~hole]).all() and (out[hole] != rgb[hole]).any()

    args = ["model=biharmonic"] if name == "biharmonic" else [f"ckpt_path={runs / name}"]
    args += [f"input={photo}", f"mask={mask_path}", f"output={tmp_path / 'out'}", f"seed={seed}",
             f"strategy={strategy}"]
    args += [f"procedure={procedure}"] if procedure else []
    args += [f"+inference.{k}={v}" for k, v in json.loads(options).items()]
    if by == "command":
        done = run_cli("inpaint.predict", *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    else:
        predict(make_cfg(*args, config="predict"))
    assert (tmp_path / "out" / f"{photo.stem}.png").read_bytes() == got  # the same PNG, byte for byte


def test_api_errors_are_messages(app_url, tmp_path):
    url, lines = app_url
    photo, mask_path, *_ = _photo_and_mask(tmp_path)
    client = gradio_client.Client(url, verbose=False)
    args = [gradio_client.handle_file(str(photo)), gradio_client.handle_file(str(mask_path))]
    with pytest.raises(Exception, match="method 'nope' is not served here; the methods are: biharmonic"):
        client.predict(*args, "nope", "", "{}", 0, "crop", api_name="/inpaint")
    small = tmp_path / "small.png"
    Image.new("L", (10, 10), 255).save(small)
    with pytest.raises(Exception, match=r"is 10x10 px but the photo is 120x90"):
        client.predict(args[0], gradio_client.handle_file(str(small)), "biharmonic", "", "{}", 0, "crop",
                       api_name="/inpaint")
    with pytest.raises(Exception, match="no inference option bogus"):
        client.predict(*args, "biharmonic", "", '{"bogus": 1}', 0, "crop", api_name="/inpaint")


# ------------------------------------------------------------------------------------------- in a real browser
@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (dev extra)")
    if not CHROMIUM:
        pytest.skip("no Chromium: apt-get install -y chromium (or set INPAINT_CHROMIUM=/path/to/chrome)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(float(os.environ.get("INPAINT_PAGE_TIMEOUT_S", HANG_GUARD_S / 6)) * 1000)  # a hang guard
    page.goto(url)
    page.wait_for_selector("#photo input[type=file]", state="attached")
    return page


def _load(page, photo: Path, w: int, h: int) -> None:
    page.locator("#photo input[type=file]").set_input_files(str(photo))
    page.get_by_text(f"Photo {photo.name}: {w}x{h} px").wait_for()
    page.wait_for_function("document.querySelectorAll('#editor canvas').length > 0")


def _stroke(page) -> None:
    page.locator("#editor").get_by_role("button", name="Brush", exact=True).click()
    box = page.locator("#editor canvas").last.bounding_box()
    x, y = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.4
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 25):
        page.mouse.move(x + 4 * i, y + 2 * i)
    page.mouse.up()
    page.wait_for_timeout(500)  # the editor hands its layers over after the stroke has ended


def _download(page, name: str) -> np.ndarray:
    href = page.locator(f"#downloads a[href$='/{name}']").first.get_attribute("href")
    return np.asarray(Image.open(io.BytesIO(page.request.get(href).body())))


def test_browser_paint_fill_two_methods_and_compare(app_url, browser, tmp_path):
    url, lines = app_url
    # a real photo (scikit-image's cat, one of the app's samples) larger than the editor shows (1350x900 ->
    # shown at 1024x683): the fill is at full size
    from inpaint.app.ui import SAMPLE_PHOTOS, sample_dir

    big = Image.open(sample_dir() / SAMPLE_PHOTOS[1]).convert("RGB").resize((1350, 900), Image.BICUBIC)
    photo = tmp_path / "holiday.png"
    big.save(photo)
    rgb = np.asarray(big.convert("RGB"))
    page = _open(browser, url)
    _load(page, photo, 1350, 900)
    page.get_by_text("shown at 1024x683; filled at full size").wait_for()
    _stroke(page)
    scnn = _method(lines, "scnn")
    page.get_by_label(scnn).check()
    page.locator("#fill").click()
    try:
        page.locator("#downloads a[href$='/SCNNModule.png']").wait_for()
    except Exception:
        raise AssertionError(f"no fill of scnn; the page says: {page.locator('#status').inner_text()}") from None
    hole = _download(page, "mask.png") > 127
    assert hole.shape == (900, 1350) and 0.002 < hole.mean() < 0.2  # the stroke, scaled to the photo
    for name in ("biharmonic.png", "SCNNModule.png"):
        fill = _download(page, name)
        assert fill.shape == rgb.shape and (fill[~hole] == rgb[~hole]).all() and (fill[hole] != rgb[hole]).any()
    status = page.locator("#status").inner_text()
    assert "biharmonic (forward)" in status and "python -m inpaint.predict" in status
    # the before/after slider shows the first method; choosing the other one swaps it
    page.locator("#compare input").click()
    page.get_by_role("option", name=scnn).click()
    shot = os.environ.get("INPAINT_APP_SCREENSHOT")
    if shot:  # README's screenshot: INPAINT_APP_SCREENSHOT=docs/app.jpg pytest tests/test_app.py -k browser
        page.screenshot(path=shot, full_page=True)
    # undo takes the stroke back: nothing left to fill is a message in the page, not a failure
    page.locator("#editor").get_by_role("button", name="Undo", exact=True).click()
    page.wait_for_timeout(500)
    page.locator("#fill").click()
    page.get_by_text("there is no hole to fill").first.wait_for()
    page.close()


def test_browser_bad_file_is_a_message(app_url, browser, tmp_path):
    url, _ = app_url
    junk = tmp_path / "broken.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a picture" * 20)
    page = _open(browser, url)
    page.locator("#photo input[type=file]").set_input_files(str(junk))
    page.get_by_text("broken.png").first.wait_for()
    page.get_by_text("is not an image that can be read").first.wait_for()
    page.close()


def test_app_command_refuses_unknown_options_and_missing_runs(tmp_path, capsys):
    from inpaint.app.__main__ import main

    assert main(["port=80x"]) == 1 and "port=80x: give a whole number" in capsys.readouterr().err
    assert main(["run=outputs"]) == 1
    assert "'run=outputs': unknown option; the options are runs=" in capsys.readouterr().err
    assert main([f"runs={tmp_path / 'nowhere'}"]) == 1 and "nowhere" in capsys.readouterr().err

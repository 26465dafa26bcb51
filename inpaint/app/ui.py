"""The web app's page (Gradio): load a photo, paint the hole, fill it with several methods, compare, download.

The page only gathers input and shows results; every fill goes through :meth:`inpaint.app.methods.Method.fill`
(:func:`inpaint.fill.fill_image`, the code of ``inpaint.predict``). The photo is kept as uploaded (its file, not a
browser re-encoding); the editor shows a copy at most :data:`DISPLAY_MAX` pixels on a side, and the painted strokes
are scaled back to the photo's size (nearest neighbour), so a 4000x3000 photo is filled at full resolution.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline machine

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

from inpaint import progress  # noqa: E402
from inpaint.app.methods import Method  # noqa: E402
from inpaint.data.io import ImageReadError, read_image  # noqa: E402
from inpaint.data.sources import sample_dir  # noqa: E402
from inpaint.fill import STRATEGIES, check_strategy, dilate_mask, read_mask  # noqa: E402

log = logging.getLogger("inpaint.app")

#: the editor shows the photo at most this many pixels on a side (the fill is at the photo's own size)
DISPLAY_MAX = 1024
#: bundled photos to try the app on (scikit-image's sample images, shipped with it: no download)
SAMPLE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
#: the Fill form's inputs besides each method's procedure and options
FORM = ("photo", "editor", "mask_file", "use_alpha", "dilate", "chosen", "strategy", "seed")
#: where each fill's PNGs are written (one folder per fill, served for download)
_OUT_ROOT = Path(tempfile.gettempdir()) / "inpaint-app"


def photo_input(**kwargs) -> gr.Image:
    """An image input that hands over the uploaded file as it is (``type="filepath"``, no mode conversion) and
    turns a file that is no image into a message naming it, instead of a stack trace. (The check wraps this
    instance's ``preprocess``: a subclass of ``gr.Image`` would be taken for a custom component by the page.)"""
    comp = gr.Image(type="filepath", image_mode=None, **kwargs)
    plain_preprocess = comp.preprocess

    def preprocess(payload):
        try:
            return plain_preprocess(payload)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            name = getattr(payload, "orig_name", None) or "the uploaded file"
            raise gr.Error(f"{name} is not an image that can be read ({type(e).__name__}): upload a PNG, JPEG, "
                           "WebP, BMP or TIFF file") from None

    comp.preprocess = preprocess
    return comp


def _name(path: str | None, fallback: str) -> str:
    return Path(path).name if path else fallback


def _read_photo(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        src = read_image(path)
    except ImageReadError as e:
        raise gr.Error(f"the photo cannot be read: {str(e).replace(str(path), _name(path, 'photo'))}") from None
    return src.rgb, src.alpha


def _display_copy(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    f = DISPLAY_MAX / max(h, w)
    if f >= 1:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * f)), max(1, round(h * f))), Image.LANCZOS))


def load_photo(path: str | None):
    """A new photo: the editor gets its display copy with no strokes."""
    if not path:
        return None, ""
    rgb, alpha = _read_photo(path)
    h, w = rgb.shape[:2]
    note = f"Photo {_name(path, '')}: {w}x{h} px" + (", with an alpha channel" if alpha is not None else "")
    shown = _display_copy(rgb)
    if shown is not rgb:
        note += f" (shown at {shown.shape[1]}x{shown.shape[0]}; filled at full size)"
    return {"background": shown, "layers": [], "composite": shown}, note


def painted_mask(editor: dict | None, size: tuple[int, int]) -> np.ndarray:
    """The strokes of the editor's layers as a ``HxW`` hole mask at the photo's ``size`` (any painted pixel:
    alpha > 0; scaled with nearest neighbour)."""
    h, w = size
    mask = np.zeros((h, w), dtype=bool)
    for layer in (editor or {}).get("layers") or []:
        if layer is None:
            continue
        arr = np.asarray(layer)
        alpha = arr[..., 3] if arr.ndim == 3 and arr.shape[2] == 4 else (arr.max(axis=-1) if arr.ndim == 3 else arr)
        strokes = alpha > 0
        if strokes.shape != (h, w):
            strokes = np.asarray(Image.fromarray(strokes).resize((w, h), Image.NEAREST))
        mask |= strokes
    return mask


def build_mask(photo: str, editor: dict | None, mask_file: str | None, use_alpha: bool, dilate: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """The photo (uint8 RGB) and the union of its holes: painted strokes, a mask file (white = hole, the same
    reader and threshold as ``inpaint.predict``), the transparent pixels; grown by ``dilate`` pixels."""
    rgb, alpha = _read_photo(photo)
    h, w = rgb.shape[:2]
    mask = painted_mask(editor, (h, w))
    if mask_file:
        try:
            from_file = read_mask(Path(mask_file)) > 0.5
        except (ImageReadError, ValueError, OSError) as e:
            raise gr.Error(f"the mask file cannot be read: {str(e).replace(mask_file, _name(mask_file, 'mask'))}"
                           ) from None
        if from_file.shape != (h, w):
            raise gr.Error(f"the mask file {_name(mask_file, '')} is {from_file.shape[1]}x{from_file.shape[0]} px "
                           f"but the photo is {w}x{h}: upload a mask of the photo's size (white = hole)")
        mask |= from_file
    if use_alpha:
        if alpha is None:
            raise gr.Error("the photo has no alpha channel: untick 'holes from transparency', or upload a PNG with "
                           "transparent holes")
        mask |= alpha < 128
    mask = dilate_mask(mask.astype(np.float32), int(dilate or 0)) > 0.5
    if not mask.any():
        raise gr.Error("there is no hole to fill: paint over the part to replace, upload a mask, or use the "
                       "photo's transparency")
    if mask.all():
        raise gr.Error("the hole covers the whole photo: leave some of it known")
    return rgb, mask


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label.split(" · ")[0]).strip("_")[:60] or "method"


def _option_value(field, value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip() == "" and field.kind is not str):
        if field.optional:
            return None
        raise gr.Error(f"option {field.name} needs a value")
    if field.kind is int:
        return int(value)
    if field.kind is float:
        return float(value)
    return field.kind(value)


def build_app(methods: Sequence[Method], title: str = "inpaint: fill by hand") -> gr.Blocks:
    """The page for ``methods`` (the first is ticked by default)."""
    stops: dict[str, threading.Event] = {}
    ui: dict[str, gr.components.Component] = {}  # the form's components by name (FORM), once built
    controls: list[tuple[Method, gr.components.Component, list]] = []

    def method_controls() -> None:
        for m in methods:
            with gr.Accordion(f"{m.label}: procedure and options", open=False):
                proc = gr.Dropdown(m.procedures, value=m.default_procedure, label="procedure",
                                   interactive=len(m.procedures) > 1)
                fields = []
                for f in m.options:
                    if f.kind is bool:
                        comp = gr.Checkbox(value=bool(f.default), label=f.name)
                    elif f.kind in (int, float):
                        comp = gr.Number(value=f.default, label=f.name + (" (empty: none)" if f.optional else ""),
                                         precision=0 if f.kind is int else None)
                    else:
                        comp = gr.Textbox(value=f.default, label=f.name)
                    fields.append((f, comp))
                scale = m.scale
                gr.Markdown(f"works at {scale[1]}x{scale[0]} px" if scale else "works at any size")
            controls.append((m, proc, fields))

    def fill(form: dict, request: gr.Request, bar=gr.Progress()):  # noqa: B008 - Gradio's way to ask for a bar
        """The Fill button: ``form`` holds every input component's value (keyed by component)."""
        photo, editor, mask_file, use_alpha, dilate, chosen, strategy, seed = (form[ui[k]] for k in FORM)
        if not photo:
            raise gr.Error("load a photo first (upload, paste, or pick a sample)")
        if not chosen:
            raise gr.Error("tick at least one method")
        rgb, mask = build_mask(photo, editor, mask_file, use_alpha, dilate)
        session = request.session_hash if request is not None else "-"
        stop = stops.setdefault(session, threading.Event())
        stop.clear()
        out_dir = Path(tempfile.mkdtemp(prefix="fill-", dir=_make_out_root()))
        Image.fromarray((mask * 255).astype(np.uint8)).save(out_dir / "mask.png")
        masked = rgb.copy()
        masked[mask] = 255
        Image.fromarray(masked).save(out_dir / "masked.png")
        gallery = [(str(out_dir / "masked.png"), f"input, {100 * mask.mean():.1f} % hole")]
        files, results, lines = [str(out_dir / "mask.png"), str(out_dir / "masked.png")], {}, []
        for m, proc, fields in controls:
            proc_value = form[proc]
            opt_values = [form[comp] for _, comp in fields]
            if m.label not in chosen:
                continue
            options = {f.name: _option_value(f, v) for (f, _), v in zip(fields, opt_values, strict=True)}

            def listen(done: int, total: int, what: str, label: str = m.label) -> None:
                if stop.is_set():
                    raise progress.Stopped(f"{done} of {total}")
                bar((done, total), desc=f"{label}: {what}")

            bar(0.0, desc=f"{m.label}: filling")
            try:
                out, seconds = m.fill(rgb, mask.astype(np.float32), proc_value, options, int(seed or 0), strategy,
                                      listen)
            except progress.Stopped as e:
                lines.append(f"**{m.label}**: stopped by you after {e}")
                continue
            except ValueError as e:  # the model refuses this input or an option: say so, fill with the others
                lines.append(f"**{m.label}** cannot fill this: {e}")
                continue
            except Exception as e:  # noqa: BLE001 - one method failing must not lose the others' results
                log.exception("app: %s failed", m.label)
                lines.append(f"**{m.label}** failed: {type(e).__name__}: {e}")
                continue
            path = out_dir / f"{_slug(m.label)}.png"
            k = 2
            while path.exists():
                path, k = out_dir / f"{_slug(m.label)}_{k}.png", k + 1
            Image.fromarray(out).save(path)
            caption = f"{m.label} ({proc_value}), {seconds:.2f} s"
            gallery.append((str(path), caption))
            files.append(str(path))
            results[m.label] = str(path)
            lines.append(f"**{m.label}** ({proc_value}): {seconds:.2f} s. Same with `"
                         f"{m.predict_command(proc_value, options, int(seed or 0), strategy)}`")
        first = next(iter(results), None)
        slider = (str(out_dir / "masked.png"), results[first]) if first else None
        return (gallery, gr.update(choices=list(results), value=first), slider, files,
                "\n\n".join(lines), {"masked": str(out_dir / "masked.png"), **results})

    def show_in_slider(label, state):
        if not label or not state or label not in state:
            return None
        return state["masked"], state[label]

    def stop_fill(request: gr.Request):
        event = stops.get(request.session_hash if request is not None else "-")
        if event is not None:
            event.set()
        return "stopping at the next step ..."

    with gr.Blocks(title=title) as app:
        gr.Markdown(f"## {title}\nLoad a photo, paint over what to remove, pick methods and press **Fill**. "
                    "Known pixels are returned unchanged; each result downloads as a full-size PNG.")
        state = gr.State({})
        with gr.Row():
            with gr.Column(scale=3):
                photo = photo_input(label="Photo", sources=["upload", "clipboard"],
                                   elem_id="photo", height=240)
                samples = [str(sample_dir() / n) for n in SAMPLE_PHOTOS if (sample_dir() / n).is_file()]
                if samples:
                    gr.Examples(samples, inputs=photo, label="Sample photos")
                editor = gr.ImageEditor(label="Paint the hole (brush, eraser, undo; the bin clears)", type="numpy",
                                        image_mode="RGBA", sources=[], transforms=[], layers=False,
                                        brush=gr.Brush(default_size=24, colors=[("#ff00ff", 0.7)],
                                                       color_mode="fixed"),
                                        eraser=gr.Eraser(default_size=24), format="png", elem_id="editor",
                                        canvas_size=(DISPLAY_MAX, DISPLAY_MAX))
                with gr.Row():
                    mask_file = photo_input(label="or a mask file (white = hole)",
                                           sources=["upload"], elem_id="mask-file", height=160)
                    with gr.Column():
                        use_alpha = gr.Checkbox(label="holes from the photo's transparency", value=False)
                        dilate = gr.Slider(0, 32, value=0, step=1, label="grow holes (px)")
            with gr.Column(scale=2):
                chosen = gr.CheckboxGroup([m.label for m in methods], value=[methods[0].label], label="Methods",
                                          elem_id="methods")
                strategy = gr.Radio(list(STRATEGIES), value=STRATEGIES[0], label="Large photos",
                                    info="crop: a window around each hole at the model's scale (default); resize: the "
                                         "whole photo at that scale; full: the model at full resolution")
                seed = gr.Number(0, precision=0, label="seed (stochastic procedures)")
                method_controls()
                with gr.Row():
                    go = gr.Button("Fill", variant="primary", elem_id="fill")
                    halt = gr.Button("Stop", variant="stop", elem_id="stop")
                status = gr.Markdown(elem_id="status")
        gallery = gr.Gallery(label="Side by side", format="png", columns=4, height="auto", elem_id="results",
                             object_fit="contain")
        with gr.Row():
            pick = gr.Dropdown([], label="Before / after: method", elem_id="compare")
            slider = gr.ImageSlider(label="Before / after", format="png", type="filepath")
        downloads = gr.File(label="Downloads: mask, masked input, each fill (full-size PNG)", file_count="multiple",
                            elem_id="downloads")

        photo.change(load_photo, photo, [editor, status], api_visibility="private")
        ui.update(photo=photo, editor=editor, mask_file=mask_file, use_alpha=use_alpha, dilate=dilate, chosen=chosen,
                  strategy=strategy, seed=seed)
        inputs = {ui[k] for k in FORM} | {c for _, proc, fields in controls for c in [proc, *[comp for _, comp in fields]]}
        go.click(fill, inputs, [gallery, pick, slider, downloads, status, state], api_name="fill",
                 concurrency_id="fill")
        halt.click(stop_fill, None, status, queue=False, api_visibility="private")
        pick.change(show_in_slider, [pick, state], slider, api_visibility="private")
        _api(methods)
    return app


def _make_out_root() -> Path:
    _OUT_ROOT.mkdir(parents=True, exist_ok=True)
    return _OUT_ROOT


def _api(methods: Sequence[Method]) -> None:
    """``/inpaint``, one fill by API (``gradio_client``; not shown in the page): a photo file, a mask file (white =
    hole), a method label, its procedure (empty: the default), its options as JSON, the seed and the strategy;
    returns the filled PNG and the seconds it took."""
    by_label = {m.label: m for m in methods}

    def inpaint(photo, mask, method, procedure, options, seed, strategy):
        if not photo or not mask:
            raise gr.Error("give a photo file and a mask file (white = hole)")
        if method not in by_label:
            raise gr.Error(f"method {method!r} is not served here; the methods are: {', '.join(by_label)}")
        try:
            check_strategy(strategy)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        rgb, hole = build_mask(photo, None, mask, False, 0)
        try:
            opts = json.loads(options or "{}")
        except ValueError as e:
            raise gr.Error(f"options must be a JSON object, e.g. {{\"temperature\": 0.8}}: {e}") from None
        try:
            out, seconds = by_label[method].fill(rgb, hole.astype(np.float32), procedure or None, opts,
                                                 int(seed or 0), strategy)
        except ValueError as e:
            raise gr.Error(f"{method} cannot fill this: {e}") from None
        path = Path(tempfile.mkdtemp(prefix="api-", dir=_make_out_root())) / f"{_slug(method)}.png"
        Image.fromarray(out).save(path)
        return str(path), seconds

    with gr.Column(visible=False):
        ins = [gr.File(label="photo"), gr.File(label="mask"), gr.Textbox(label="method"),
               gr.Textbox(label="procedure"), gr.Textbox(value="{}", label="options"),
               gr.Number(0, precision=0, label="seed"), gr.Textbox(value=STRATEGIES[0], label="strategy")]
        outs = [gr.File(label="fill"), gr.Number(label="seconds")]
        gr.Button(visible=False).click(inpaint, ins, outs, api_name="inpaint", concurrency_id="fill")

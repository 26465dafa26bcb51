"""``python -m inpaint.app [runs=DIR[,DIR...]] [port=7860] [host=127.0.0.1] [device=auto] [max_methods=12]
[concurrency=1] [share=false]``: serve the page to inpaint by hand and print its URL.

``runs=``: run directories, folders holding runs (searched recursively, e.g. ``outputs/`` or a sweep's
``multirun/...``) or ``.ckpt`` files, comma-separated; each run with a checkpoint becomes a method, labelled from
its results card. Biharmonic is always there. ``concurrency``: fills running at once (each method still fills one
image at a time). Needs the ``app`` extra: ``pip install -e ".[app]"``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

#: the options and their defaults
OPTIONS = {"runs": "", "port": "7860", "host": "127.0.0.1", "device": "auto", "max_methods": "12",
           "concurrency": "1", "share": "false"}

log = logging.getLogger("inpaint.app")


def parse_args(argv: Sequence[str]) -> dict[str, str]:
    """``key=value`` arguments over :data:`OPTIONS`; an unknown key or a bare word is refused by name."""
    opts = dict(OPTIONS)
    for arg in argv:
        key, eq, value = arg.partition("=")
        if arg in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        if not eq or key not in OPTIONS:
            raise ValueError(f"{arg!r}: unknown option; the options are {', '.join(f'{k}=' for k in OPTIONS)} "
                             "(python -m inpaint.app --help)")
        opts[key] = value
    for key in ("port", "max_methods", "concurrency"):
        if not opts[key].isdigit():
            raise ValueError(f"{key}={opts[key]}: give a whole number (its default is {OPTIONS[key]})")
    if opts["share"].lower() not in ("true", "false"):
        raise ValueError(f"share={opts['share']}: give true or false")
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    from inpaint.cli import USER_ERRORS, echo, report_user_error

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio probing its own server
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
        try:
            from inpaint.app.ui import build_app
        except ImportError as e:
            raise ValueError(f"the web app needs Gradio ({e}): pip install -e \".[app]\"") from None
        from inpaint.app.methods import find_methods
        from inpaint.fill import pick_device

        device = str(pick_device(opts["device"]))
        methods = find_methods([p for p in opts["runs"].split(",") if p], device, int(opts["max_methods"]))
        for m in methods:
            m.model  # noqa: B018 - load every model now: a broken checkpoint fails here, not in the page
    except USER_ERRORS as e:
        return report_user_error(e, "inpaint.app")
    echo(f"methods: {', '.join(m.label for m in methods)}", "inpaint.app")
    app = build_app(methods)
    app.queue(default_concurrency_limit=int(opts["concurrency"]))
    _, url, share_url = app.launch(server_name=opts["host"], server_port=int(opts["port"]), prevent_thread_lock=True,
                                   share=opts["share"].lower() == "true", quiet=True, show_error=True,
                                   footer_links=["api"])
    echo(f"inpaint app: {url}" + (f" (public: {share_url})" if share_url else "") + "  (Ctrl-C stops it)",
         "inpaint.app")
    try:
        app.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

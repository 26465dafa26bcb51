"""``python -m inpaint.app``: a web page to inpaint by hand (Gradio; ``pip install -e ".[app]"``).

:mod:`inpaint.app.methods` finds the runs and fills (no Gradio); :mod:`inpaint.app.ui` is the page;
:mod:`inpaint.app.__main__` the command line.
"""

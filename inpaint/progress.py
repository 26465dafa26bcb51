"""The progress of a long computation on one image (a GAN inversion, pixel-by-pixel decoding), for whoever shows
it, and the way to stop it.

A loop calls :func:`report` with what it has done; nothing happens (one context-variable read) unless a caller
listens with :func:`listening`, as the web app does to drive its progress bar and its Stop button. A listener may
raise :class:`Stopped` to end the computation at that step. The listener belongs to the calling context (a
``ContextVar``), so fills running in other threads at the same time do not see each other's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: ``listener(done, total, what)``
Listener = Callable[[int, int, str], None]

_listener: ContextVar[Listener | None] = ContextVar("inpaint_progress_listener", default=None)


class Stopped(Exception):
    """Raised by a listener to stop the computation it is told about (the app's Stop button)."""


def active() -> bool:
    """Whether anyone listens (a loop may skip computing what it would report)."""
    return _listener.get() is not None


def report(done: int, total: int, what: str) -> None:
    """``done`` of ``total`` units of ``what`` (e.g. ``"mGANprior inversion"`` iterations) are finished."""
    listener = _listener.get()
    if listener is not None:
        listener(int(done), int(total), what)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Within the block, :func:`report` calls ``listener``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)

"""Drive the real app in an offscreen-rendered window: for the tests and the screenshot tool.

SDL's ``offscreen`` video driver gives Kivy a real OpenGL context (Mesa's llvmpipe on a server)
with no X server, so widgets are laid out and drawn exactly as on a screen and
``glReadPixels`` returns what a user would see. :func:`prepare_environment` must run before the
first ``import kivy`` (Kivy reads these variables at import); ``tests/edge_app/conftest.py`` sets
the same variables itself.

:class:`HeadlessSession` starts :class:`~edge_app.app.CxrEdgeApp` without entering Kivy's
blocking main loop: it prepares the app as ``App.run`` does, then advances the event loop one
frame at a time (``EventLoop.idle()``), so a caller can wait for the worker thread's result,
press buttons, and read the frame buffer between frames. Several sessions can run one after
another in one process (they share Kivy's single window).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import CxrEdgeError


class HeadlessError(CxrEdgeError, RuntimeError):
    """The offscreen Kivy session was used in the wrong order."""


class HeadlessTimeoutError(HeadlessError, TimeoutError):
    """An awaited app state was not reached in time."""


OFFSCREEN_ENV = {
    "SDL_VIDEODRIVER": "offscreen",
    "KIVY_WINDOW": "sdl2",
    "KIVY_NO_ARGS": "1",
    "KIVY_NO_CONFIG": "1",
    "KIVY_NO_FILELOG": "1",
    "KIVY_LOG_MODE": "PYTHON",
}


def prepare_environment(kivy_home: str | Path | None = None) -> None:
    """Set the variables that make Kivy render offscreen; call before Kivy is imported."""
    if "kivy" in __import__("sys").modules and os.environ.get("SDL_VIDEODRIVER") != "offscreen":
        raise HeadlessError(
            "prepare_environment() called after kivy was imported without SDL_VIDEODRIVER=offscreen; "
            "expected it to run before the first kivy import"
        )
    os.environ.update(OFFSCREEN_ENV)
    os.environ["KIVY_HOME"] = str(kivy_home or tempfile.mkdtemp(prefix="kivy-home-"))


_touch_ids = iter(range(1, 1 << 30))


def _touch_args(x: float, y: float) -> dict[str, float]:
    from kivy.core.window import Window

    return {"x": x / (Window.width - 1.0), "y": y / (Window.height - 1.0)}


def _make_touch(x: float, y: float, button: str | None) -> Any:
    """A MotionEvent like the mouse provider's, at window coordinates (x, y)."""
    from kivy.input.motionevent import MotionEvent

    class HeadlessTouch(MotionEvent):
        def depack(self, args: dict[str, float]) -> None:
            self.sx, self.sy = args["x"], args["y"]
            self.profile = ["pos", "button"] if button else ["pos"]
            if button:
                self.button = button
            super().depack(args)

    return HeadlessTouch("headless", next(_touch_ids), _touch_args(x, y), is_touch=True, type_id="touch")


class HeadlessSession:
    """One running app in the offscreen window; see the module docstring."""

    def __init__(self, app: Any, size: tuple[int, int] = (1280, 800)) -> None:
        self.app = app
        self.size = size

    def start(self) -> HeadlessSession:
        from kivy.base import EventLoop
        from kivy.core.window import Window

        Window.size = self.size
        EventLoop.quit = False
        from kivy.input import kivy_postproc_modules

        for module in list(kivy_postproc_modules.values()):  # double tap etc., as App.run sets up
            EventLoop.add_postproc_module(module)
        if EventLoop.status != "started":
            EventLoop.start()
        self.app._run_prepare()
        self.pump(3)
        return self

    def pump(self, frames: int = 1) -> None:
        """Advance the app by ``frames`` frames (clock, input, layout, drawing)."""
        from kivy.base import EventLoop

        for _ in range(frames):
            EventLoop.idle()

    def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
    ) -> None:
        """Pump frames until ``predicate()`` holds; TimeoutError naming ``what`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise HeadlessTimeoutError(
                    f"{what} not reached after {timeout:.0f} s "
                    f"(screen {self.app.screens.current!r}, busy={self.app.busy})"
                )
            self.pump()
        self.pump(2)  # let bindings and layout settle, then draw

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until the worker has posted everything it was given."""
        self.wait_until(lambda: not self.app.busy and not self.app.service.busy, timeout, "worker idle")

    def resize(self, width: int, height: int) -> None:
        from kivy.core.window import Window

        Window.size = (width, height)
        self.size = (width, height)
        self.pump(4)

    def screenshot(self) -> NDArray[np.uint8]:
        """The window as drawn: (H, W, 3) uint8 RGB, first row at the top of the window.

        The window's whole canvas (every widget, popups included) is rendered by OpenGL into a
        framebuffer object of the window's current size, then read back. Reading the default
        framebuffer instead would not work after a resize: SDL's offscreen driver keeps the
        surface it created at its first size, while Kivy lays out and draws for the new one.
        """
        from kivy.core.window import Window
        from kivy.graphics import ClearBuffers, ClearColor, Fbo

        self.pump(2)
        width, height = (int(v) for v in Window.size)
        canvas = Window.canvas
        context = Window.render_context
        fbo = Fbo(size=(width, height), with_stencilbuffer=True)
        with fbo:
            ClearColor(0, 0, 0, 1)
            ClearBuffers()
        context.remove(canvas)
        try:
            fbo.add(canvas)
            fbo.draw()
            raw = fbo.texture.pixels
            fbo.remove(canvas)
        finally:
            context.add(canvas)
        frame = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 4)
        return np.ascontiguousarray(frame[::-1, :, :3])

    def save_screenshot(self, path: str | Path) -> Path:
        import io

        from PIL import Image

        from edge_app.storage import write_atomic

        buffer = io.BytesIO()
        Image.fromarray(self.screenshot()).save(buffer, format="PNG", optimize=True)
        return write_atomic(path, buffer.getvalue())

    def touch(
        self,
        x: float,
        y: float,
        button: str | None = None,
        move_to: tuple[float, float] | None = None,
        settle: int = 2,
    ) -> None:
        """A finger (or ``button``: ``left``, ``scrollup``, ``scrolldown``) down and up at window (x, y).

        ``settle`` frames are drawn after the release; 1 processes the release and nothing after it.
        """
        from kivy.base import EventLoop

        event = _make_touch(x, y, button)
        EventLoop._dispatch_input("begin", event)
        self.pump()
        if move_to is not None:
            event.move(_touch_args(*move_to))
            EventLoop._dispatch_input("update", event)
            self.pump()
        EventLoop._dispatch_input("end", event)
        self.pump(settle)

    def tap(self, widget: Any) -> None:
        """Tap the centre of ``widget`` as a user would (through the window's input dispatch)."""
        self.touch(*widget.to_window(*widget.center))

    def stop(self) -> None:
        """Stop the app (on_stop, worker shut down) and clear the window for the next session."""
        from kivy.app import App
        from kivy.core.window import Window

        app = self.app
        app.dispatch("on_stop")
        for child in list(Window.children):
            Window.remove_widget(child)
        App._running_app = None
        self.pump(2)

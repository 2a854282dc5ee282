"""The confirm screen's corner editor: the photo, the film's outline and four draggable corner handles.

:class:`CornerEditor` draws a photo texture fitted into the widget (aspect kept, centred), the quad
through the four corners -- its top side (top-left to top-right: the top of the film as it will be
read) thicker and in another colour -- and a round handle on each corner. A finger or the mouse
pressed within :attr:`CornerEditor.grab_radius` of a handle grabs that corner; moving drags it
(kept inside the photo); the release fires ``on_corners_changed``. While a corner is dragged,
``on_drag`` fires on each move (the screen throttles its preview to it).

``corners`` are in the displayed photo's pixels (x right, y down); the screen converts them to the
original photo's pixels (``edge_app.photo.PhotoView``). :meth:`CornerEditor.handle_to_window` is
where a handle is on screen (the tests drag there).
"""

from __future__ import annotations

from typing import Any

from kivy.graphics import Color, Ellipse, Line, Rectangle
from kivy.metrics import dp
from kivy.properties import ListProperty, NumericProperty, ObjectProperty
from kivy.uix.widget import Widget

from edge_app.photo import clamp_corner

QUAD_COLOUR = (0.25, 0.85, 1.0, 1.0)
TOP_COLOUR = (1.0, 0.80, 0.20, 1.0)
HANDLE_COLOUR = (1.0, 1.0, 1.0, 0.95)
ACTIVE_COLOUR = (1.0, 0.55, 0.20, 1.0)


class CornerEditor(Widget):
    """A photo with its film outline; drag the four corner handles (see the module docstring)."""

    texture = ObjectProperty(None, allownone=True)
    image_size = ListProperty([1, 1])  # (width, height) of the displayed photo, in its pixels
    corners = ListProperty([])  # [x0, y0, x1, y1, x2, y2, x3, y3], displayed photo pixels, y down
    handle_radius = NumericProperty(dp(11))
    grab_radius = NumericProperty(dp(36))
    active = NumericProperty(-1)  # the corner being dragged, -1 when none
    fit_pos = ListProperty([0, 0])  # where the photo is drawn (widget coordinates)
    fit_size = ListProperty([1, 1])

    __events__ = ("on_corners_changed", "on_drag")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind(
            pos=self._redraw,
            size=self._redraw,
            texture=self._redraw,
            image_size=self._redraw,
            corners=self._redraw,
            active=self._redraw,
        )

    # ------------------------------------------------------------------ geometry

    def _fit(self) -> None:
        width, height = (max(1.0, float(v)) for v in self.image_size)
        scale = min(self.width / width, self.height / height)
        self.fit_size = [width * scale, height * scale]
        self.fit_pos = [
            self.x + (self.width - width * scale) / 2,
            self.y + (self.height - height * scale) / 2,
        ]

    def image_to_local(self, x: float, y: float) -> tuple[float, float]:
        """Widget coordinates of displayed-photo pixel (x, y) (y from the top)."""
        width, height = (max(1.0, float(v)) for v in self.image_size)
        return (
            self.fit_pos[0] + x / width * self.fit_size[0],
            self.fit_pos[1] + (1.0 - y / height) * self.fit_size[1],
        )

    def local_to_image(self, lx: float, ly: float) -> tuple[float, float]:
        """Displayed-photo pixel under widget coordinates (lx, ly)."""
        width, height = (max(1.0, float(v)) for v in self.image_size)
        x = (lx - self.fit_pos[0]) / max(1e-6, self.fit_size[0]) * width
        y = (1.0 - (ly - self.fit_pos[1]) / max(1e-6, self.fit_size[1])) * height
        return x, y

    def corner(self, index: int) -> tuple[float, float]:
        return float(self.corners[2 * index]), float(self.corners[2 * index + 1])

    def handle_to_window(self, index: int) -> tuple[float, float]:
        """Window coordinates of corner ``index``'s handle (0 top-left ... 3 bottom-left)."""
        return self.to_window(*self.image_to_local(*self.corner(index)))

    def set_corner(self, index: int, x: float, y: float) -> None:
        width, height = (float(v) for v in self.image_size)
        x, y = clamp_corner(x, y, width, height)
        values = list(self.corners)
        values[2 * index], values[2 * index + 1] = x, y
        self.corners = values

    def nearest_handle(self, lx: float, ly: float) -> int:
        """The handle within :attr:`grab_radius` of widget point (lx, ly), nearest first; -1 if none."""
        best, best_distance = -1, float(self.grab_radius)
        for index in range(len(self.corners) // 2):
            hx, hy = self.image_to_local(*self.corner(index))
            distance = ((hx - lx) ** 2 + (hy - ly) ** 2) ** 0.5
            if distance <= best_distance:
                best, best_distance = index, distance
        return best

    # ------------------------------------------------------------------ drawing

    def _redraw(self, *_args: Any) -> None:
        self._fit()
        self.canvas.clear()
        with self.canvas:
            Color(0.05, 0.05, 0.06, 1)
            Rectangle(pos=self.pos, size=self.size)
            if self.texture is not None:
                Color(1, 1, 1, 1)
                Rectangle(texture=self.texture, pos=self.fit_pos, size=self.fit_size)
            if len(self.corners) != 8:
                return
            points = [self.image_to_local(*self.corner(i)) for i in range(4)]
            flat = [v for point in points for v in point]
            Color(*QUAD_COLOUR)
            Line(points=flat, close=True, width=dp(1.6))
            Color(*TOP_COLOUR)
            Line(points=flat[:4], width=dp(3))
            radius = float(self.handle_radius)
            for index, (hx, hy) in enumerate(points):
                Color(*(ACTIVE_COLOUR if index == self.active else HANDLE_COLOUR))
                Ellipse(pos=(hx - radius, hy - radius), size=(2 * radius, 2 * radius))
                Color(0.05, 0.05, 0.06, 1)
                Line(circle=(hx, hy, radius), width=dp(1.2))

    # ------------------------------------------------------------------ touches

    def on_touch_down(self, touch: Any) -> bool:
        if not self.collide_point(*touch.pos) or len(self.corners) != 8:
            return super().on_touch_down(touch)
        if getattr(touch, "is_mouse_scrolling", False):
            return False
        index = self.nearest_handle(*touch.pos)
        if index < 0:
            return super().on_touch_down(touch)
        touch.grab(self)
        touch.ud[self._key] = index
        self.active = index
        return True

    def on_touch_move(self, touch: Any) -> bool:
        if touch.grab_current is not self:
            return super().on_touch_move(touch)
        index = touch.ud.get(self._key, -1)
        if index >= 0:
            self.set_corner(index, *self.local_to_image(*touch.pos))
            self.dispatch("on_drag")
        return True

    def on_touch_up(self, touch: Any) -> bool:
        if touch.grab_current is not self:
            return super().on_touch_up(touch)
        touch.ungrab(self)
        index = touch.ud.pop(self._key, -1)
        if index >= 0:
            self.set_corner(index, *self.local_to_image(*touch.pos))
        self.active = -1
        self.dispatch("on_corners_changed")
        return True

    @property
    def _key(self) -> str:
        return f"corner-editor-{id(self)}"

    def on_corners_changed(self) -> None:
        """A corner was released (the screen updates the preview and the confirm button)."""

    def on_drag(self) -> None:
        """A corner moved under the finger."""

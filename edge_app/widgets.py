"""The app's own widgets; their look is in ``kv/widgets.kv``, their behaviour here.

* :class:`FindingRow` -- one finding: name, a bar of the operating-point score (0-100) with the
  operating-point marker at 50, the score (never a percentage: it is not a probability), and a
  "!" when the finding's threshold is unreliable;
  tapping it selects the finding whose heat map is shown.
* :class:`OverlayImage` -- the radiograph texture with the overlay texture on top, drawn with
  the user's opacity; :meth:`OverlayImage.image_to_window` maps an image pixel to window
  coordinates (the tests read the screenshot there).
* :class:`RadiographView` -- a stencil view holding a :class:`~kivy.uix.scatter.Scatter`, so the
  image can be zoomed (pinch, mouse wheel) and panned; a double tap resets it.
"""

from __future__ import annotations

import numpy as np
from kivy.graphics.texture import Texture
from kivy.properties import (
    BooleanProperty,
    NumericProperty,
    ObjectProperty,
    StringProperty,
)
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.stencilview import StencilView
from kivy.uix.widget import Widget
from numpy.typing import NDArray

from edge_app.display import DisplayImages


def texture_from_rgb(rgb: NDArray[np.uint8]) -> Texture:
    """An RGB texture from an (H, W, 3) uint8 array whose first row is the top of the image."""
    height, width = rgb.shape[:2]
    texture = Texture.create(size=(width, height), colorfmt="rgb", bufferfmt="ubyte")
    texture.blit_buffer(np.ascontiguousarray(rgb).tobytes(), colorfmt="rgb", bufferfmt="ubyte")
    texture.flip_vertical()  # GL rows start at the bottom
    return texture


class ProbabilityBar(Widget):
    """A horizontal bar of ``value`` in [0, 1] with a marker line at ``marker``."""

    value = NumericProperty(0.0)
    marker = NumericProperty(0.5)
    positive = BooleanProperty(False)


class FindingRow(ButtonBehavior, BoxLayout):
    """One finding of a prediction; ``on_release`` selects it."""

    label = StringProperty("")
    display_name = StringProperty("")
    score = NumericProperty(0.0)
    model_output = NumericProperty(0.0)
    operating_point = NumericProperty(0.5)
    positive = BooleanProperty(False)  # above the operating point
    threshold_note = StringProperty("")
    selected = BooleanProperty(False)
    select_callback = ObjectProperty(None, allownone=True)

    def on_release(self) -> None:
        if self.select_callback is not None:
            self.select_callback(self.label)


class FindingsList(BoxLayout):
    """The findings, highest score first (layout: a vertical box in a ScrollView)."""

    selected = StringProperty("")
    select_callback = ObjectProperty(None, allownone=True)

    def show(self, ranked: list, selected: str) -> None:
        """Replace the rows with ``ranked`` (``FindingResult`` objects, already sorted)."""
        from kivy.factory import Factory

        self.clear_widgets()
        for finding in ranked:
            self.add_widget(
                Factory.FindingRow(
                    label=finding.label,
                    display_name=finding.label.replace("_", " "),
                    score=float(finding.score),
                    model_output=float(finding.model_output),
                    operating_point=float(finding.operating_point),
                    positive=bool(finding.above_operating_point),
                    threshold_note=finding.threshold_note or "",
                    select_callback=self._select,
                )
            )
        self.select(selected)

    def rows(self) -> list[FindingRow]:
        """The rows from top to bottom (Kivy keeps children in reverse order)."""
        return [child for child in reversed(self.children) if isinstance(child, FindingRow)]

    def select(self, label: str) -> None:
        self.selected = label
        for row in self.rows():
            row.selected = row.label == label

    def _select(self, label: str) -> None:
        self.select(label)
        if self.select_callback is not None:
            self.select_callback(label)


class OverlayImage(Widget):
    """The radiograph with the heat-map overlay drawn on top at ``opacity`` (when ``show_overlay``)."""

    grey_texture = ObjectProperty(None, allownone=True)
    overlay_texture = ObjectProperty(None, allownone=True)
    opacity_value = NumericProperty(0.6)
    show_overlay = BooleanProperty(True)
    image_size = ObjectProperty((1, 1))  # (width, height) of the display arrays
    box_size = ObjectProperty((1, 1))  # the area to fit into (the Scatter's local size)

    def on_image_size(self, *_args: object) -> None:
        self._fit()

    def on_box_size(self, *_args: object) -> None:
        self._fit()

    def _fit(self) -> None:
        """Largest size with the image's aspect ratio inside ``box_size``, centred."""
        box_w, box_h = self.box_size
        img_w, img_h = self.image_size
        scale = min(box_w / max(1, img_w), box_h / max(1, img_h))
        self.size = (img_w * scale, img_h * scale)
        self.pos = ((box_w - self.width) / 2.0, (box_h - self.height) / 2.0)

    def set_images(self, images: DisplayImages | None) -> None:
        if images is None:
            self.grey_texture = self.overlay_texture = None
            self.image_size = (1, 1)
            return
        self.image_size = images.size
        self.grey_texture = texture_from_rgb(images.grey)
        self.overlay_texture = texture_from_rgb(images.overlay)

    def set_overlay(self, images: DisplayImages) -> None:
        self.overlay_texture = texture_from_rgb(images.overlay)

    def image_to_window(self, x: float, y: float) -> tuple[float, float]:
        """Window coordinates (origin bottom left) of the centre of display pixel (x, y), y from the top."""
        width, height = self.image_size
        local = (self.x + (x + 0.5) / width * self.width, self.y + (1.0 - (y + 0.5) / height) * self.height)
        return self.to_window(*local)


class RadiographView(StencilView):
    """Zoom and pan container for an :class:`OverlayImage` (see kv/widgets.kv)."""

    image = ObjectProperty(None, allownone=True)

    def reset_view(self, *_args: object) -> None:
        scatter = self.ids.get("scatter")
        if scatter is None:
            return
        scatter.transform = scatter.transform.identity()
        scatter.scale = 1.0
        scatter.pos = self.pos

    def on_touch_down(self, touch) -> bool:  # type: ignore[no-untyped-def]
        if self.collide_point(*touch.pos) and getattr(touch, "is_double_tap", False):
            self.reset_view()
            return True
        if touch.is_mouse_scrolling and self.collide_point(*touch.pos):
            scatter = self.ids.scatter
            factor = 1.1 if touch.button == "scrolldown" else 1 / 1.1
            new_scale = min(scatter.scale_max, max(scatter.scale_min, scatter.scale * factor))
            from kivy.graphics.transformation import Matrix

            scatter.apply_transform(
                Matrix().scale(new_scale / scatter.scale, new_scale / scatter.scale, 1), anchor=touch.pos
            )  # in the parent's coordinates
            return True
        return super().on_touch_down(touch)


class BusyOverlay(FloatLayout):
    """Covers the window while the worker runs; swallows touches when shown."""

    active = BooleanProperty(False)
    text = StringProperty("")

    def on_touch_down(self, touch) -> bool:  # type: ignore[no-untyped-def]
        return self.active

    def on_touch_move(self, touch) -> bool:  # type: ignore[no-untyped-def]
        return self.active

    def on_touch_up(self, touch) -> bool:  # type: ignore[no-untyped-def]
        return self.active

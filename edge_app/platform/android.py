"""Android: the system document picker, the camera app, and bundles shipped as APK assets (pyjnius).

Nothing here runs on a desktop, and nothing Android-specific is imported at module level, so the
module imports everywhere (tests check that). On a device:

* **Pick** -- ``Intent.ACTION_OPEN_DOCUMENT`` (no storage permission needed on Android 10+); the
  chosen ``content://`` URI is copied with ``java.nio.file.Files.copy`` into the app's cache
  folder, under the document's display name, and that local path goes to the app.
* **Capture** -- ``MediaStore.ACTION_IMAGE_CAPTURE`` with ``EXTRA_OUTPUT`` set to a new MediaStore
  entry (``Pictures/cxr-edge``), so the full-resolution JPEG is written without a FileProvider; the
  CAMERA permission is requested first (Android refuses the intent to apps that declare it but
  do not hold it). The photo is copied to the cache folder like a picked file and goes to the
  app's photo flow (*Photograph a film*: the film's corners are found and confirmed on the photo,
  then it is rectified and scored; ``edge_app.photo_flow``).
* **Pick a photo** -- *Open a photo*: the same document picker limited to JPEG and PNG.
* **Packaged bundles** -- buildozer's ``android.add_assets`` puts bundles under ``assets/bundles/``
  in the APK; on first start :meth:`AndroidAdapter.install_packaged_bundles` copies each one to
  ``<user_data_dir>/bundles/<name>/`` so the Predictor reads ordinary files.

Activity results arrive on Java's UI thread; they are handed to Kivy with ``Clock.schedule_once``.
This module cannot be exercised on the development machine (no Android runtime there); see
docs/deploy-android.md for what was and was not verified.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from edge_app.platform.base import OnPicked, PickResult, PlatformAdapter
from edge_app.platform.jni import import_jnius

logger = logging.getLogger(__name__)

REQUEST_PICK = 0xC0E1
REQUEST_CAPTURE = 0xC0E2
RESULT_OK = -1  # android.app.Activity.RESULT_OK
PICK_MIME_TYPES = ["image/png", "image/jpeg", "application/dicom", "application/octet-stream"]
PHOTO_MIME_TYPES = ["image/jpeg", "image/png"]
ASSET_BUNDLES = "bundles"


def _jni() -> Any:
    """Import pyjnius lazily; off Android this raises AndroidOnlyError with an explanation."""
    return import_jnius("the Android platform adapter (system picker, camera, packaged bundles)")


def open_android_model(bundle: Any, entry: Any, threads: int | None = None) -> Any:
    """Open one model entry of ``bundle`` on Android (the self-test's opener)."""
    from cxr_core.runtime import RuntimeUnavailableError
    from edge_app.platform.android_litert import open_android_backend

    if not str(entry.format).startswith("tflite"):
        raise RuntimeUnavailableError(
            f"{entry.name} ({entry.format}) needs onnxruntime, which the Android app does not ship; "
            "the .tflite models of the bundle run with LiteRT"
        )
    return open_android_backend(bundle, model=entry.name, threads=threads)


def load_android_predictor(
    bundle_dir: Path,
    model: str | None = None,
    runtime: str | None = None,
    threads: int | None = None,
    allow_untrusted: bool = False,
) -> Any:
    """``Predictor(bundle, backend)`` with the LiteRT Android backend injected (``runtime`` is ignored).

    The bundle's signature is checked first, against the keys the APK ships (``trusted-keys/``,
    see :mod:`edge_app.packaged`); ``allow_untrusted`` is the app's opt-in setting."""
    from cxr_core.predictor import Predictor, load_verified_bundle
    from edge_app.platform.android_litert import open_android_backend

    bundle = load_verified_bundle(bundle_dir, allow_untrusted=allow_untrusted)
    return Predictor(bundle, open_android_backend(bundle, model=model, threads=threads))


class AndroidAdapter(PlatformAdapter):
    """System picker, camera capture and packaged bundles on Android."""

    name = "android"

    def __init__(self) -> None:
        jnius = _jni()
        self._autoclass = jnius.autoclass
        self._cast = jnius.cast
        from android import activity, mActivity  # type: ignore[import-not-found]  # p4a's module

        self._activity = activity
        self._context = mActivity
        self._pending: dict[int, tuple[OnPicked, Any]] = {}
        activity.bind(on_activity_result=self._on_activity_result)

    @property
    def can_capture(self) -> bool:
        return True

    # ------------------------------------------------------------------ picking

    def pick_image(self, on_picked: OnPicked, start_dir: Path | None = None) -> None:
        self._open_document(on_picked, PICK_MIME_TYPES)

    def pick_photo(self, on_picked: OnPicked, start_dir: Path | None = None) -> None:
        self._open_document(on_picked, PHOTO_MIME_TYPES)

    def _open_document(self, on_picked: OnPicked, mime_types: list[str]) -> None:
        intent_cls = self._autoclass("android.content.Intent")
        intent = intent_cls(intent_cls.ACTION_OPEN_DOCUMENT)
        intent.addCategory(intent_cls.CATEGORY_OPENABLE)
        intent.setType("*/*")
        intent.putExtra(intent_cls.EXTRA_MIME_TYPES, mime_types)
        self._pending[REQUEST_PICK] = (on_picked, None)
        self._context.startActivityForResult(intent, REQUEST_PICK)

    def pick_folder(self, on_picked: OnPicked, start_dir: Path | None = None) -> None:
        # A bundle on Android ships inside the APK (install_packaged_bundles); folders of the shared
        # storage are not readable as plain files by an app since Android 11.
        on_picked(
            PickResult(error="on Android, bundles are installed with the app (see docs/deploy-android.md)")
        )

    def capture_image(self, on_picked: OnPicked) -> None:
        from android.permissions import Permission, request_permissions  # type: ignore[import-not-found]

        def granted(permissions: list[str], results: list[bool]) -> None:
            if all(results):
                self._post(lambda: self._start_capture(on_picked))
            else:
                self._post(lambda: on_picked(PickResult(error="camera permission was not granted")))

        request_permissions([Permission.CAMERA], granted)

    def _start_capture(self, on_picked: OnPicked) -> None:
        values = self._autoclass("android.content.ContentValues")()
        columns = self._autoclass("android.provider.MediaStore$MediaColumns")
        values.put(columns.DISPLAY_NAME, f"cxr-edge-{time.strftime('%Y%m%d-%H%M%S')}.jpg")
        values.put(columns.MIME_TYPE, "image/jpeg")
        values.put(columns.RELATIVE_PATH, "Pictures/cxr-edge")
        media = self._autoclass("android.provider.MediaStore")
        images = self._autoclass("android.provider.MediaStore$Images$Media")
        uri = self._context.getContentResolver().insert(images.EXTERNAL_CONTENT_URI, values)
        if uri is None:
            on_picked(PickResult(error="the photo library refused a new picture (storage full?)"))
            return
        intent_cls = self._autoclass("android.content.Intent")
        intent = intent_cls(media.ACTION_IMAGE_CAPTURE)
        intent.putExtra(media.EXTRA_OUTPUT, self._cast("android.os.Parcelable", uri))
        intent.addFlags(intent_cls.FLAG_GRANT_WRITE_URI_PERMISSION)
        self._pending[REQUEST_CAPTURE] = (on_picked, uri)
        self._context.startActivityForResult(intent, REQUEST_CAPTURE)

    def _on_activity_result(self, request_code: int, result_code: int, intent: Any) -> None:
        if request_code not in self._pending:
            return
        on_picked, capture_uri = self._pending.pop(request_code)
        try:
            if result_code != RESULT_OK:
                if capture_uri is not None:
                    self._context.getContentResolver().delete(capture_uri, None, None)
                result = PickResult()
            else:
                uri = capture_uri if capture_uri is not None else intent.getData()
                result = PickResult(path=self._copy_to_cache(uri))
        except Exception as exc:  # a Java exception surfaces as jnius.JavaException
            logger.exception("reading the picked document failed")
            result = PickResult(error=f"the picked file cannot be read ({exc})")
        self._post(lambda: on_picked(result))

    def _display_name(self, uri: Any) -> str:
        resolver = self._context.getContentResolver()
        columns = self._autoclass("android.provider.OpenableColumns")
        cursor = resolver.query(uri, None, None, None, None)
        name = "picked-image"
        if cursor is not None:
            try:
                if cursor.moveToFirst():
                    index = cursor.getColumnIndex(columns.DISPLAY_NAME)
                    if index >= 0:
                        name = str(cursor.getString(index) or name)
            finally:
                cursor.close()
        return Path(name).name or "picked-image"

    def _copy_to_cache(self, uri: Any) -> Path:
        cache = Path(str(self._context.getCacheDir().getAbsolutePath())) / "picked"
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / self._display_name(uri)
        stream = self._context.getContentResolver().openInputStream(uri)
        try:
            self._java_copy(stream, target)
        finally:
            stream.close()
        return target

    def _java_copy(self, stream: Any, target: Path) -> None:
        """InputStream -> file, entirely in Java (no byte arrays cross into Python)."""
        files = self._autoclass("java.nio.file.Files")
        paths = self._autoclass("java.nio.file.Paths")
        option = self._autoclass("java.nio.file.StandardCopyOption")
        files.copy(stream, paths.get(str(target), []), [option.REPLACE_EXISTING])

    # ------------------------------------------------------------------ packaged bundles

    def install_packaged_bundles(self, destination: Path) -> list[Path]:
        """Copy ``assets/bundles/<name>/*`` to ``destination/<name>/`` unless already there."""
        assets = self._context.getAssets()
        installed = []
        for name in list(assets.list(ASSET_BUNDLES) or []):
            target = Path(destination) / str(name)
            if (target / "manifest.json").is_file():
                continue
            staging = Path(destination) / f".{name}.installing"
            staging.mkdir(parents=True, exist_ok=True)
            for file_name in list(assets.list(f"{ASSET_BUNDLES}/{name}") or []):
                stream = assets.open(f"{ASSET_BUNDLES}/{name}/{file_name}")
                try:
                    self._java_copy(stream, staging / str(file_name))
                finally:
                    stream.close()
            staging.rename(target)  # the bundle appears complete or not at all
            installed.append(target)
            logger.info("installed packaged bundle %s", target)
        return installed

    def predictor_loader(self) -> Any:
        """Predictors run the bundle's .tflite model with LiteRT's Android library (android_litert)."""
        return load_android_predictor

    def model_opener(self) -> Any:
        """The self-test opens .tflite models with LiteRT's Android library; ONNX cannot run here."""
        return open_android_model

    def dismiss(self) -> None:
        self._pending.clear()

    @staticmethod
    def _post(callback: Any) -> None:
        from kivy.clock import Clock

        Clock.schedule_once(lambda _dt: callback(), 0)

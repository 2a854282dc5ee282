"""Android packaging: ``buildozer.spec``, the staging step and the offline spec check.

* ``python -m edge_app.android.stage --bundle B`` copies the device code (cxr_core, edge_app) and
  a ``main.py`` into ``edge_app/android/build/app`` and the bundle into ``build/assets/bundles``;
* ``buildozer -v android debug`` (run in ``edge_app/android``) builds the APK from them;
* ``python -m edge_app.android.spec_check`` validates the spec offline (buildozer's own checks and
  python-for-android's recipe resolver; no SDK or NDK needed).

See docs/deploy-android.md.
"""

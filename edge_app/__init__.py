"""The Kivy app for field clinicians and Raspberry Pi kiosks (``cxr-app``; docs/app.md).

UI only: every decode, inference, calibration and heat map comes from cxr_core, called on a
worker thread. Platform services (file picking, camera, packaged bundles, LiteRT on Android) sit
behind small adapters in :mod:`edge_app.platform`; Android packaging is in ``edge_app/android``
and the Raspberry Pi kiosk files in ``edge_app/deploy/pi``. Importing this package imports nothing
heavy; Kivy is imported by :mod:`edge_app.app` and :mod:`edge_app.main`.
"""

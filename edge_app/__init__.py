"""The Kivy app for field clinicians and Raspberry Pi kiosks (UI only; calls cxr_core).

Not built yet: arrives with the "Kivy app" issue (see README's stage map).
"""

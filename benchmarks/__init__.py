"""edge-bench: latency, memory and accuracy parity per format on the target machine.

Not built yet: arrives with the "edge-bench" issue (see README's stage map).
"""

"""edge-bench: latency, memory and accuracy parity per format on the target machine.

``edge-bench BUNDLE`` measures every model of a bundle, each (format, thread count) in a fresh
child process (:mod:`benchmarks.worker`): load time, batch-1 latency, throughput, peak RSS, the
end-to-end split through the Predictor, golden-set parity and, with ``--data``, AUC parity; it
writes results.json / results.md / plots and applies CI gates. ``edge-bench compare`` merges
results from several devices. :func:`cxr_core.selftest.run_selftest` is the golden check alone
(the app's diagnostics screen and ``cxr-export verify``). Needs only cxr_core and a runtime (no
torch); docs/benchmarks.md.
"""

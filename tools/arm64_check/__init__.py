"""``tools/arm64-check``: prove the Raspberry Pi (arm64) path on an x86 machine under qemu-user.

* :mod:`.root` builds an arm64 root (Debian bookworm's python3.11 and libraries, plus the aarch64
  wheels of the ``[pi]`` extra and onnxruntime), cached between runs;
* :mod:`.qemu` runs a Python module inside it with ``qemu-aarch64-static``;
* :mod:`.phantoms` writes the few phantom images both sides score;
* :mod:`.probe` is what both sides run on the bundle's golden inputs (every format's probabilities);
* :mod:`.compare` compares the arm64 outputs with the host's against each format's golden tolerance;
* :mod:`.installer` exercises the Pi installer's dry run and its systemd units;
* :mod:`.cli` ties them together. See docs/deploy-pi.md (*Checking the arm64 path on x86*).
"""

"""Training side of cxr-edge (needs the [train] extra: torch, torchvision)."""

"""The main job end to end (``cxr-demo``): phantoms -> train -> export -> predict -> edge-bench."""

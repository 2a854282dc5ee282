"""Developer tools for the app (screenshots)."""

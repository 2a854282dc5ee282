"""Developer tools that live in the repository but are not part of the installed package."""

"""User-side examples: networks for `model=custom` (docs/networks.md)."""

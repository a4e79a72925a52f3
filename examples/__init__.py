"""User-side examples: networks for `model=custom` (README, "Bring your own network")."""

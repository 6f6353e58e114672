"""dialogue_worker package."""

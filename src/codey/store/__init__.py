"""State that must survive a restart."""

"""Getting a verified model file onto the machine and reading its header."""

"""HTTP dialects, thin: parse and validate, call a service, render."""

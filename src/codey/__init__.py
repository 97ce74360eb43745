"""codey: code generation, code chat and code completion behind one budgeted service."""

from __future__ import annotations

__version__ = "0.1.0"

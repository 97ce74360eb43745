"""Engines behind one interface. A backend knows nothing of quotas or HTTP dialects."""

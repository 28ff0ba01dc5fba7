"""Use cases. Each owns its transaction; web, worker and CLI call these and nothing below."""

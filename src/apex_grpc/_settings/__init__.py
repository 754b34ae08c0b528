"""Settings: a client's (`ClientSettings`), a call's (`CallSettings`), and their checks."""

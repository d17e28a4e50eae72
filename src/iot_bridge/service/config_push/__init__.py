"""A config pushed (POST /config): validated, persisted and applied as a whole."""

"""The bridge's domain: readings, session detection and events. Standard library only."""

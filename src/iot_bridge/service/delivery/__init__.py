"""The outbox's events to Odoo: lanes, retries, the endpoint's health, calls of many events."""

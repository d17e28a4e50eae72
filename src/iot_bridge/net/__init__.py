"""Protocol code we own in place of libraries: MQTT, HTTP server and client, Prometheus text.

See README.md beside this file: what each part replaces, the measurement
that justified it, and the tests that guard it.
"""

"""Readings replayed offline: a trace (`iot-bridge replay`) and the board's tuning."""

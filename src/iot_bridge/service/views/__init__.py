"""Read models: the board, /health and friends, the metrics, the MQTT state out.

They read what the write path published (the feed) or holds (the store, the
ingestor's devices); nothing here changes a detector or the outbox.
"""

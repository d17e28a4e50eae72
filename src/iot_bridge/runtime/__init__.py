"""Runtime helpers the composition root and the service use: the clock, the heap, a thread."""

"""The HTTP API's asyncio HTTP/1.1 server: accept, heads, connections (h11 parses)."""

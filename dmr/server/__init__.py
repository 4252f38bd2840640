"""The HTTP server: DMR's management API and the OpenAI-compatible inference API (`dmr serve`)."""

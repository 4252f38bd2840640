"""Ollama's API (`/api/*`): wire models, routes and the NDJSON renderer (../shared/docs/dialects.md)."""

"""Models as OCI artifacts: references, the content-addressed store, registry and Hugging Face transfers."""

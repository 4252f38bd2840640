"""What a pull reports: the model ID, whether it was already stored, and each blob's transfer. Shared by
registry pulls (pull.py) and Hugging Face pulls (huggingface.py), which pull.py dispatches to."""

from __future__ import annotations

from dmr.models.blobs import BlobResult


class PullResult:
    def __init__(self, model_id: str, cached: bool, blobs: list[BlobResult]) -> None:
        self.model_id = model_id
        self.cached = cached
        self.blobs = blobs

    @property
    def downloaded(self) -> int:
        return sum(b.downloaded for b in self.blobs)

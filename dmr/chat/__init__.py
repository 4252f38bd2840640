"""Chat, as the server sees it once a request is decoded: typed events (events.py), the incremental parser
that turns an engine's token events into them (stream.py), and the transcript every renderer, the recorder
and the non-streaming responses build from. Knows no HTTP and no wire format."""

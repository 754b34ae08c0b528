"""Chat completions: the feature behind ChatCompletion, ChatCompletionStream and stored chats.

- ``completions.py``: `ChatCompletions`: a request on the engine, its budget and sizes,
  the wire shapes of answers and chunks.
- ``queue.py``: `EngineQueue`, the bounded first-come-first-served queue in front of an
  engine that answers a limited number of requests at once; pushback when full.
"""

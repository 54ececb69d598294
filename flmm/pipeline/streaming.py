"""Streaming generated text: a transformers streamer that emits exact text chunks, and an iterator that
runs a chat turn in a worker thread.

The chunks always concatenate to exactly the answer's final text (the whole generated sequence is
re-decoded at every step and only a stable prefix is emitted), so a streamed answer and a non-streamed
one are the same string.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from transformers.generation.streamers import BaseStreamer

T = TypeVar("T")
_END = object()


class TextChunkStreamer(BaseStreamer):
    """Calls ``sink(chunk)`` with newly finished text while ``model.generate`` runs.

    The first ``put`` (the prompt) is skipped. A chunk ends at whitespace so that words are not cut
    (a later token can still change an unfinished word, e.g. a multi-byte character); ``end()`` flushes
    the rest. Decoding skips special tokens, as the final answer does.
    """

    def __init__(self, tokenizer: Any, sink: Callable[[str], None]) -> None:
        self.tokenizer = tokenizer
        self.sink = sink
        self.ids: list[int] = []
        self.sent = 0
        self._prompt_seen = False
        self.finished = False

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.ids.extend(int(v) for v in value.reshape(-1).tolist())
        text = self._text()
        cut = max(text.rfind(" "), text.rfind("\n")) + 1
        if cut > self.sent:
            self.sink(text[self.sent : cut])
            self.sent = cut

    def end(self) -> None:
        text = self._text()
        if len(text) > self.sent:
            self.sink(text[self.sent :])
            self.sent = len(text)
        self.finished = True


class ThreadedStream(Generic[T]):
    """Iterate over text chunks produced by ``run(sink)`` in a worker thread; then :meth:`result`.

    ``run`` receives a ``sink(chunk)`` callable and returns the final result; an exception raised in
    ``run`` is re-raised by the iteration (or by :meth:`result`) in the caller's thread.
    """

    def __init__(self, run: Callable[[Callable[[str], None]], T], name: str = "flmm-stream") -> None:
        self._queue: queue.Queue = queue.Queue()
        self._result: T | None = None
        self._error: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(target=self._work, args=(run,), name=name, daemon=True)
        self._thread.start()

    def _work(self, run: Callable[[Callable[[str], None]], T]) -> None:
        try:
            self._result = run(self._queue.put)
        except BaseException as e:  # re-raised in the consumer's thread
            self._error = e
        finally:
            self._queue.put(_END)

    def __iter__(self) -> Iterator[str]:
        while not self._done:
            item = self._queue.get()
            if item is _END:
                self._done = True
                break
            if item:
                yield item
        self._thread.join()
        if self._error is not None:
            raise self._error

    def result(self) -> T:
        """Wait for the end (consuming any chunks not yet read) and return the result."""
        for _ in self:
            pass
        assert self._result is not None
        return self._result

"""The web demo (Gradio): ``flmm serve``, or :func:`launch` from Python. Needs ``pip install gradio``."""

from flmm.demo.render import grounding_status, highlight_html
from flmm.demo.session import ChatUpdate, DemoBackend, DemoSession
from flmm.demo.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, read_upload


def launch(*args, **kwargs):
    """See :func:`flmm.demo.app.launch` (imported lazily: Gradio is slow to import)."""
    from flmm.demo.app import launch as _launch

    return _launch(*args, **kwargs)


__all__ = [
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_PIXELS",
    "ChatUpdate",
    "DemoBackend",
    "DemoSession",
    "grounding_status",
    "highlight_html",
    "launch",
    "read_upload",
]

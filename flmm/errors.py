"""flmm's own exception types. Every error a user can cause is one of these, with a message that says
what to do; nothing user-caused should surface as a bare torch/transformers traceback."""


class FlmmError(Exception):
    """Base class of every error flmm raises on purpose."""


class UnsupportedModelError(FlmmError):
    """The model class has no registered LMM family adapter."""


class InputError(FlmmError, ValueError):
    """A user input (image, text, conversation, span, scene, file) is malformed."""


class ImageError(InputError):
    """An image cannot be read or has an unusable size."""


class SpanError(InputError):
    """A character span or token index does not lie in the text / sequence."""


class ConfigError(FlmmError, ValueError):
    """A config or checkpoint does not fit the model it is used with."""


class NotReadyError(FlmmError, RuntimeError):
    """An API was used out of order (e.g. `predict` before `set_image`)."""


class DataError(FlmmError):
    """A dataset file is missing, corrupt or in the wrong format."""

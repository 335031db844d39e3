"""The generation backends' error, `BackendError`: kept apart so that the engine worker and the
engines it runs (`seal.generation.vllm`) can both raise it without importing each other."""


class BackendError(RuntimeError):
    """A generation backend could not start or run; the message says what to change."""

"""What a Ray worker shows on the driver's console. The hook is Ray's `worker_process_setup_hook`;
it is run in each worker process before the worker imports anything of seal, so this module imports
nothing of seal either: every `from tqdm.auto import tqdm` in the worker comes after the hook.
"""

from __future__ import annotations


def bars_to_driver() -> None:
    """Every tqdm bar made in this worker is mirrored to a `tqdm_ray` bar, which the driver draws,
    and writes nothing itself: a worker's output is a log file, and a terminal's redraws would reach
    the driver as fragments of lines. It stays a full tqdm (libraries subclass it); only its drawing
    goes to the driver."""
    import io

    import tqdm.auto
    from ray.experimental import tqdm_ray

    class ToDriver(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            self._remote = None
            super().__init__(*args, **{**kwargs, "file": io.StringIO()})
            if not self.disable:
                self._remote = tqdm_ray.tqdm(desc=self.desc, total=self.total, unit=self.unit)

        def display(self, msg=None, pos=None):
            if self._remote is not None:
                self._remote.n, self._remote.total = self.n, self.total
                self._remote.set_description(self.desc)  # sends the state, at most once a second
            return True

        def close(self):
            super().close()
            if self._remote is not None:
                self._remote.n = self.n
                self._remote.close()
                self._remote = None

    tqdm.auto.tqdm = ToDriver

"""Shared, opt-in test fixtures."""

from pathlib import Path

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

CACHE_OPTIONS = {
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}


@pytest.fixture(scope="session")
def jax_cache_dir(tmp_path_factory):
    """One persistent-compilation-cache directory for the session (also for subprocesses,
    through JAX_COMPILATION_CACHE_DIR)."""
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def jax_compile_cache(jax_cache_dir):
    """Persistent compilation cache for a module's tests, restored afterwards.

    Each `train_and_evaluate` call jits a fresh `train_step` partial, so repeated tiny runs
    in one process would recompile the same programs (seconds each on 2 busy cores); with
    the cache they load the executables compiled by the first run. Numerics are unchanged:
    a cached executable is the one the compiler produced.
    """
    names = ("jax_compilation_cache_dir", *CACHE_OPTIONS)
    previous = {name: getattr(jax.config, name) for name in names}
    jax.config.update("jax_compilation_cache_dir", str(jax_cache_dir))
    for name, value in CACHE_OPTIONS.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()  # the cache is looked up once per process: look again
    yield jax_cache_dir
    for name, value in previous.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.fixture
def make_unreadable(monkeypatch):
    """make_unreadable(path): opening `path` raises what the OS answers for a file without
    read permission (chmod does not stop root, which the tests may run as)."""
    real_open = Path.open
    denied = set()

    def refuse(self, *args, **kw):
        if self in denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kw)

    monkeypatch.setattr(Path, "open", refuse)
    return denied.add

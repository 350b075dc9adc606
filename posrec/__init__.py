"""posrec: sequential next-item recommendation with position-aware sequential attention."""

__version__ = "0.1.0"

__all__ = ["Recommender"]


def __getattr__(name: str):
    # Lazy: `import posrec` (e.g. for __version__ in setup.cfg) must not import jax.
    if name == "Recommender":
        from posrec.recommend import Recommender

        return Recommender
    raise AttributeError(f"module 'posrec' has no attribute {name!r}")

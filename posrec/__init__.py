"""posrec: sequential next-item recommendation with position-aware sequential attention."""

__version__ = "0.1.0"

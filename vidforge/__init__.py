"""vidforge: the thin face over pipeline/, captioner/, model/ and train/.

This package holds only the ``vidforge`` console script's dispatcher and ``vidforge demo``.
"""

__version__ = "0.1.0"

"""The caption quality report: ``vidforge report OUT`` writes ``OUT/report/index.html`` (one
self-contained page) and ``OUT/report/report.json`` (every number in it), streaming over the
manifests in bounded memory. See :mod:`captioner.report.cli`."""

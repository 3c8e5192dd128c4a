"""pipeline/: curation. Probe, single-pass scan, clip planning, filters, extraction, shards and
manifests, driven as a Ray Data job (``vidforge curate`` or ``python -m pipeline``)."""

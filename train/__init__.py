"""train/: Lightning fit runs of the expert transformer on vidforge shards."""

"""Pure parsers of the bytes the exporter reads: no host root, no cache, no file opening."""

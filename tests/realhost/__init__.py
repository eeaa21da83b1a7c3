"""The real Debian host: a tree built from Debian's packages (build.sh), scenarios derived from it
by real operations (scenarios.sh), and the exporter judged against the real tools run inside it."""

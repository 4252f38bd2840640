"""The `dmr` command line. Subcommands are imported lazily: `dmr --help` loads no native code."""

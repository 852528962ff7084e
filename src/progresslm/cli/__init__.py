"""The `progresslm` command line: `main(argv) -> int` plus one module per subcommand."""

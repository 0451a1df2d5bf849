"""One module per `threenines` subcommand."""

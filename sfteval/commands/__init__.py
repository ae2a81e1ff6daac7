"""CLI subcommands; each module exposes register(app). See sfteval/cli.py."""

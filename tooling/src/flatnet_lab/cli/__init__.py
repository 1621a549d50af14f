"""The tooling's subcommands of ``flatnet`` (found through the ``flatnet.commands`` entry points)."""

"""`python -m foundry` runs the command line."""

from foundry import cli

raise SystemExit(cli.main())

"""`python -m stackblaze.cli`: the same as the `stackblaze` command."""

from stackblaze.cli.app import main

main()

"""``python -m backchannel`` runs the command line."""

from backchannel.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

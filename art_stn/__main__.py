"""`python -m art_stn ...` runs the command-line interface (also under `torchrun`)."""

from art_stn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

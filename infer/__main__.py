"""`python -m infer`: the ais_bench stand-in (see infer/cli.py)."""
from infer.cli import main

if __name__ == "__main__":
    main()

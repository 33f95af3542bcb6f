"""Postprocess entry point (ModelZoo name): delegates to postprocess.cli."""
from postprocess.cli import main

if __name__ == "__main__":
    main()

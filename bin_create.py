"""Preprocess entry point (ModelZoo name): delegates to preprocess.cli."""
from preprocess.cli import main

if __name__ == "__main__":
    main()

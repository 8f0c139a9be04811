"""MLproject entry point `metalign`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

if __name__ == "__main__":  # worker processes re-import this module: they must not re-run the command
    main(["metalign", *sys.argv[1:]])

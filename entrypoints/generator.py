"""MLproject entry point `generator`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

if __name__ == "__main__":  # worker processes re-import this module: they must not re-run the command
    main(["generator", *sys.argv[1:]])

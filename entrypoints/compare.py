"""MLproject entry point `compare`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

main(["compare", *sys.argv[1:]])

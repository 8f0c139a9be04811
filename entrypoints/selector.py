"""MLproject entry point `selector`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

main(["selector", *sys.argv[1:]])

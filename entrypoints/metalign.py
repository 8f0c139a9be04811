"""MLproject entry point `metalign`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

main(["metalign", *sys.argv[1:]])

"""MLproject entry point `grokking`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

main(["grokking", *sys.argv[1:]])

"""MLproject entry point `grokking_sweep`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

main(["grokking-sweep", *sys.argv[1:]])

"""MLproject entry point `self_modeling`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

main(["self-modeling", *sys.argv[1:]])

"""MLproject entry point `generator`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

main(["generator", *sys.argv[1:]])

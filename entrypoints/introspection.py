"""MLproject entry point `introspection`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

main(["introspection", *sys.argv[1:]])

"""MLproject entry point `tune`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

main(["tune", *sys.argv[1:]])

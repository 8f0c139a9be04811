"""MLproject entry point `self_modeling_comparison`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

main(["self-modeling-comparison", *sys.argv[1:]])

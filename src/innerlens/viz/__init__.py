"""Figure builders: tidy DataFrames in, matplotlib Figures out."""

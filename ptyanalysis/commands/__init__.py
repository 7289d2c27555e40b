"""One module per ptyanalysis subcommand: argparse set-up and the call into the science modules."""

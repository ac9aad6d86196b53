"""``python -m daguerreo_actors``: the same command line as ``daguerreo-actors``."""

from daguerreo_actors.cli import main

main(prog_name="daguerreo-actors")

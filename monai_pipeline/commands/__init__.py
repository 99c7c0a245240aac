"""One module per ``monai-pipeline`` command: ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args)``."""

"""The ``graphcnn`` subcommands, one module each: demo, train, inspection (``graphcnn
inspect``; not named ``inspect``, the standard library's module), compile, run, bench.

Each module has ``add_parser(subparsers)`` (its subcommand, arguments and help, with
``func`` set to its ``run``) and ``run(args) -> exit status``; common.py holds what they
share. graphcnn/cli.py assembles them.
"""

"""``python -m legato.cli``: the ``legato`` command line."""

from legato.cli import main

if __name__ == "__main__":
    main()

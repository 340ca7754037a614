"""``python -m wshub``: the same as the ``wshub`` command."""

from wshub.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

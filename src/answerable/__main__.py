"""``python -m answerable``: the same command as the ``answerable`` console script, for a
machine where the venv's ``bin`` is not on PATH."""

from answerable._entry import main

if __name__ == "__main__":
    main()

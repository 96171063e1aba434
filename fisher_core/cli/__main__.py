"""``python -m fisher_core.cli``: the ``fisherlab`` command."""

from .app import main

if __name__ == "__main__":
    main()
